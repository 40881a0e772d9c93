"""A real ZooKeeper for the development cluster: Apache ZooKeeper from Maven Central, run
as its own JVM with a generated config, listening on loopback only.

The jars (``org.apache.zookeeper:zookeeper`` and its runtime dependencies, the two
libraries the server needs that its POM leaves to the distribution, and
``slf4j-simple`` so its log is readable) are fetched once with Maven into the download
cache (:func:`ancho.cluster.downloads.cache_dir`). :class:`ZooKeeperNode` writes
``zoo.cfg`` (standalone, ``clientPortAddress`` on loopback, the admin server off, the
``ruok``/``srvr`` four-letter words on), starts ``ZooKeeperServerMain`` in its own
session with its log in the node's folder, and is ready when ``srvr`` reports its mode.
A node restarted on the same folder keeps its data (the Mesos masters' leader znodes
are ephemeral; the registry the masters keep there is not).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClusterError
from .downloads import maven_jars

ZOOKEEPER_VERSION = "3.9.5"
#: slf4j-simple matching the slf4j-api ZooKeeper 3.9.5 depends on.
SLF4J_VERSION = "2.0.13"
#: The server needs Dropwizard metrics and snappy, which ZooKeeper's POM marks
#: "provided": the versions its own binary distribution ships.
METRICS_VERSION = "4.1.12.1"
SNAPPY_VERSION = "1.1.10.5"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
_HEAP = "-Xmx256m"


def zookeeper_jars() -> Path:
    """The folder holding ZooKeeper's jars (fetched on first use)."""
    return maven_jars(
        f"zookeeper-{ZOOKEEPER_VERSION}",
        [
            ("org.apache.zookeeper", "zookeeper", ZOOKEEPER_VERSION),
            ("org.slf4j", "slf4j-simple", SLF4J_VERSION),
            ("io.dropwizard.metrics", "metrics-core", METRICS_VERSION),
            ("org.xerial.snappy", "snappy-java", SNAPPY_VERSION),
        ],
    )


def four_letter_word(address: tuple[str, int], word: str, timeout: float = 1.0) -> str:
    """Send a four-letter command; return the answer ('' when ZooKeeper is not there)."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@dataclass(slots=True)
class ZooKeeperNode:
    """One standalone ZooKeeper server in ``folder``, on ``host:port``."""

    folder: Path
    host: str = "127.0.0.1"
    port: int = 2181
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def write_config(self) -> Path:
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.folder / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    "tickTime=500",
                    "initLimit=10",
                    "syncLimit=5",
                    # Sessions of 2-20 s: a dead master's leader znode goes within seconds.
                    "minSessionTimeout=1000",
                    "maxSessionTimeout=20000",
                    f"dataDir={data}",
                    f"clientPort={self.port}",
                    f"clientPortAddress={self.host}",
                    "maxClientCnxns=0",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,mntr",
                    "",
                ]
            ),
            "utf-8",
        )
        return config

    def start(self, timeout: float = 60.0) -> None:
        """Start the JVM and wait until it serves (``srvr`` reports its mode)."""
        if four_letter_word((self.host, self.port), "ruok"):
            raise ClusterError(f"something already answers ZooKeeper on {self.address}")
        java = shutil.which("java")
        if java is None:
            raise ClusterError("ZooKeeper needs Java 17 (`java` is not on PATH)")
        config = self.write_config()
        jars = zookeeper_jars()
        log = open(self.folder / "zookeeper.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.process = subprocess.Popen(
                [java, _HEAP, "-Djava.net.preferIPv4Stack=true",
                 "-Dorg.slf4j.simpleLogger.showDateTime=true",
                 "-cp", f"{jars}/*", MAIN_CLASS, str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=self.folder,
            )  # fmt: skip
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ClusterError(
                    f"ZooKeeper exited with {self.process.returncode} while starting; "
                    f"see {self.folder / 'zookeeper.log'}"
                )
            # `ruok` says imok before the server takes sessions; `srvr` says Mode once it does.
            if "Mode: " in four_letter_word((self.host, self.port), "srvr", 0.5):
                return
            time.sleep(0.1)
        self.kill()
        raise ClusterError(f"ZooKeeper did not answer on {self.address} within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL the JVM (its data stays for a restart)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; idempotent."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()
