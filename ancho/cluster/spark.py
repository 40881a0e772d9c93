"""Spark standalone for the development cluster: pyspark's own jars, a master and ``W``
workers, each a JVM on its own loopback address.

``spark-class org.apache.spark.deploy.master.Master`` and ``…worker.Worker`` from the
installed pyspark (no separate Spark download). The master listens on
``127.0.0.31:<port>``; worker ``i`` on ``127.0.0.<32+i>`` with one core and the memory
given. Ready when the master's ``/json`` lists every worker ALIVE.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import ClusterError

MASTER_IP = "127.0.0.31"
_START_TIMEOUT_S = 90.0


def spark_home() -> Path:
    """pyspark's folder, which holds ``bin/spark-class`` and the jars."""
    try:
        import pyspark
    except ImportError:
        raise ClusterError("--spark-workers needs pyspark: pip install 'ancho[spark]'") from None
    return Path(pyspark.__file__).resolve().parent


def _environment(folder: Path, ip: str) -> dict[str, str]:
    home = spark_home()
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise ClusterError("Spark needs Java 17 (`java` is not on PATH)")
    return {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOG_DIR": str(folder / "logs"),
        "SPARK_WORKER_DIR": str(folder / "work"),
        "SPARK_NO_DAEMONIZE": "1",
        # The web UIs bind SPARK_LOCAL_IP (else every address): loopback only.
        "SPARK_LOCAL_IP": ip,
    }


def command(role: str, ip: str, port: int, webui_port: int, master: str | None = None,
            memory_mb: int = 1024) -> list[str]:  # fmt: skip
    """The ``spark-class`` command line of a master or a worker."""
    spark_class = str(spark_home() / "bin" / "spark-class")
    if role == "master":
        return [spark_class, "org.apache.spark.deploy.master.Master",
                "--host", ip, "--port", str(port), "--webui-port", str(webui_port)]  # fmt: skip
    assert master is not None
    return [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", ip,
            "--port", str(port), "--webui-port", str(webui_port), "--cores", "1",
            "--memory", f"{memory_mb}m", master]  # fmt: skip


def start(argv: list[str], folder: Path, ip: str) -> subprocess.Popen[bytes]:
    """Start one Spark JVM on ``ip`` in its own session, its log in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    log = open(folder / "spark.log", "ab")  # noqa: SIM115 - the child keeps it
    try:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=folder, env=_environment(folder, ip),
        )  # fmt: skip
    finally:
        log.close()


def master_state(webui: str, timeout: float = 2.0) -> dict[str, Any]:
    """The master's ``/json`` document (workers and their states)."""
    with urllib.request.urlopen(f"http://{webui}/json/", timeout=timeout) as response:
        state: dict[str, Any] = json.loads(response.read())
        return state


def wait_workers(webui: str, workers: int, alive: Any) -> None:
    """Wait until the master lists ``workers`` ALIVE workers (``alive()`` is False when a
    process has died)."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not alive():
            raise ClusterError("a Spark process exited while starting; see its spark.log")
        try:
            state = master_state(webui)
            if sum(w.get("state") == "ALIVE" for w in state.get("workers", [])) >= workers:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise ClusterError(f"{workers} Spark workers did not register within {_START_TIMEOUT_S:.0f} s")
