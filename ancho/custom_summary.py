"""A model's custom ``summarize``, run in a fresh, confined process of its own per run.

The summary worker (:mod:`scheduler.summary_worker`) holds open stores for every user
and never imports model code. For a run with ``model.summary`` it exports the run's ok
sequences to a Parquet file and calls :func:`run_custom_summary`, which starts
``python -m ancho.custom_summary`` through the sandbox launcher (:mod:`ancho.confined`).
That process is new for the run and holds no credential at all: it reads the Parquet
export, not the store, so it needs neither the store's URL nor the network.

What the process may do:

* read the system's paths (the interpreter and its site-packages, where pyspark and
  its jars live), the model's folder, the run's requirements environment, the Parquet
  export, the JVM (``JAVA_HOME``, or the ``java`` on ``PATH``, and the files its
  folder links to, such as ``/etc/java-17-openjdk/security/java.security``),
  ``SPARK_HOME`` when set, and the resolver's files (``localhost`` must resolve);
* write only its own folders (:func:`scratch_folder`): ``home`` and ``tmp`` (``HOME``,
  ``TMPDIR``, the JVM's ``java.io.tmpdir`` and ``user.home``, Spark's scratch space)
  and ``input``, which holds its copy of the run's results;
* use sockets, but only in a network namespace of its own: Spark's driver, block
  manager, py4j gateway and Python workers talk over that loopback; Cassandra, the
  Mesos agent, ZooKeeper or any other service of the machine are out of reach;
* nothing under ``/proc``: OpenJDK 17 starts without it (container detection then
  finds nothing and the JVM sizes itself from ``sched_getaffinity`` and ``sysinfo``).
  Granting ``/proc`` would not be "its own processes only": Landlock cannot follow the
  ``/proc/self`` symlink, and the procfs the process would see is the machine's, which
  lists every process (the PID namespace hides them from ``kill``, not from a procfs
  mounted outside it).

Spark runs ``local[*]`` here whatever master the worker uses: executors of a Spark
cluster run outside this sandbox, and a ``summarize`` that ships a UDF there would run
unconfined. Two things Spark needs of a sandboxed uid, which has no ``/etc/passwd``
entry: ``SPARK_USER`` (else Spark asks Hadoop, which asks the system for the user's
name) and a Hadoop login user set before the context starts (Hadoop's file system
layer does the same lookup).

What comes back is untrusted: one JSON object of at most :data:`MAX_RESULT_BYTES`, of
finite numbers, strings, booleans, nulls, lists and nested objects, at most
:data:`MAX_DEPTH` deep. A ``summarize`` that raises still gives ``custom`` =
``{"error": "Type: message"}`` (:mod:`ancho.summary`); a process that cannot load the
model, crashes, times out or sends anything else raises :class:`CustomSummaryFailed`.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from .confined import (
    ALLOW_WEAKER,
    EXIT_SANDBOX_UNAVAILABLE,
    UNAVAILABLE_PREFIX,
    WEAKER_PREFIX,
    Confinement,
    weaker_allowed,
)

log = logging.getLogger("ancho.summary")

MAX_RESULT_BYTES = 2**20
MAX_DEPTH = 32
TIMEOUT_S = 3600.0
#: Lines of the process' stderr kept for the error message when it fails.
_TAIL_LINES = 8
_RESOLVER_FILES = ("/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf")
_PASSED = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "JAVA_HOME", "SPARK_HOME", "TZ")
_USER = "ancho"


class CustomSummaryFailed(Exception):
    """The custom summary's process gave no valid result; the message says why."""


@dataclass(slots=True, frozen=True)
class CustomRequest:
    """What the process needs to run one run's ``summarize``."""

    model_dir: str
    entrypoint: str
    requirements_dir: str | None
    params: dict[str, Any]
    outputs: list[str]
    parquet: str
    master: str = "local[*]"


# --- the caller's side --------------------------------------------------------------
def java_read_paths(environ: dict[str, str]) -> list[Path]:
    """The JVM's folder and what its symlinks point to outside it."""
    home = environ.get("JAVA_HOME")
    if not home:
        java = shutil.which("java", path=environ.get("PATH"))
        if java is None:
            return []
        home = str(Path(os.path.realpath(java)).parent.parent)
    root = Path(os.path.realpath(home))
    paths = [root]
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            entry = Path(folder) / name
            if entry.is_symlink():
                target = Path(os.path.realpath(entry))
                if target.exists() and not target.is_relative_to(root):
                    paths.append(target)
    return paths


def _environment(environ: dict[str, str], home: Path, tmp: Path) -> dict[str, str]:
    env = {k: environ[k] for k in _PASSED if k in environ}
    if weaker_allowed(environ):
        env[ALLOW_WEAKER] = "1"
    env.setdefault("PATH", os.defpath)
    env.update(HOME=str(home), TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1",
               PYTHONNOUSERSITE="1")  # fmt: skip
    return env


@contextlib.contextmanager
def scratch_folder(root: str | None = None) -> Iterator[Path]:
    """A new folder for one custom summary's process, removed afterwards.

    The run's export goes into its ``input`` folder. It is made beneath the system's
    temporary folder (or ``root``), not the caller's work folder: the JVM checks paths
    with ``access(2)``, which ignores the capability a root caller's sandbox reads with,
    so every folder above the process' own must be searchable by the sandbox's uid
    (this one is, ``0711``: searchable, not listable; the folders in it become the
    sandbox's own, ``0700``).
    """
    path = Path(tempfile.mkdtemp(prefix="ancho-custom-summary-", dir=root))
    try:
        path.chmod(0o711)
        for name in ("home", "tmp", "input"):
            (path / name).mkdir(mode=0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_custom_summary(
    request: CustomRequest, scratch: Path, *, timeout_s: float = TIMEOUT_S,
    output: IO[str] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Run ``request`` in a new confined process; its ``custom`` result.

    ``scratch`` comes from :func:`scratch_folder` (``request.parquet`` lies in its
    ``input`` folder). The process' stderr goes to ``output`` (default: ours).
    Raises :class:`CustomSummaryFailed`.
    """
    home, tmp, given = scratch / "home", scratch / "tmp", scratch / "input"
    environ = dict(os.environ)
    read = [Path(request.model_dir), Path(request.parquet), *java_read_paths(environ)]
    read += [Path(p) for p in _RESOLVER_FILES]
    if request.requirements_dir:
        read.append(Path(request.requirements_dir))
    if environ.get("SPARK_HOME"):
        read.append(Path(environ["SPARK_HOME"]))
    confinement = Confinement(
        read=[str(p) for p in read if p.exists()],
        # Each by name: a root caller's sandbox gets each one handed to its uid.
        write=[str(home), str(tmp), str(given)],
        sockets=True,
        private_network=True,
        # The JVM's threads count as processes; it keeps its jars open.
        processes=4096,
        open_files=16384,
        file_size_mb=16384,
    )
    command = confinement.command([sys.executable, "-m", "ancho.custom_summary"])
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp,
                            env=_environment(environ, home, tmp))  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
    pump = threading.Thread(target=_pump, args=(proc.stderr, output or sys.stderr, tail),
                            name="ancho-custom-summary-stderr", daemon=True)  # fmt: skip
    pump.start()
    deadline = time.monotonic() + timeout_s
    code: int | None = None
    try:
        try:
            proc.stdin.write(json.dumps(asdict(request)).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # it died first: its status says why
        raw = _read_capped(proc.stdout, deadline, proc)
        if raw is not None:  # else it may still be writing: the kill below ends it
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise CustomSummaryFailed(f"custom summary: took more than {timeout_s:.0f} s") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        pump.join(timeout=5)
    if raw is None:
        raise CustomSummaryFailed(
            f"custom summary: its result is larger than {MAX_RESULT_BYTES // 2**10} KiB"
        )
    assert code is not None
    if code == EXIT_SANDBOX_UNAVAILABLE and any(UNAVAILABLE_PREFIX in line for line in tail):
        reason = next(line for line in tail if UNAVAILABLE_PREFIX in line)
        reason = reason.split(UNAVAILABLE_PREFIX, 1)[1]
        raise CustomSummaryFailed(
            f"custom summary: the sandbox is unavailable ({reason}); an operator may allow a"
            f" weaker one with {ALLOW_WEAKER}=1"
        )
    if not raw:
        how = (f"was killed by {signal.Signals(-code).name}" if code < 0
               else f"exited with status {code}")  # fmt: skip
        last = f": {tail[-1]}" if tail else ""
        raise CustomSummaryFailed(f"custom summary: its process {how} without a result{last}")
    reply = parse_result(raw)
    if "failed" in reply:
        raise CustomSummaryFailed(f"custom summary: {reply['failed']}")
    result: dict[str, Any] = reply["custom"]
    return result


def _pump(stream: IO[bytes], to: IO[str], tail: collections.deque[str]) -> None:
    for line in stream:
        text = line.decode(errors="replace").rstrip()
        tail.append(text)
        if text.startswith(WEAKER_PREFIX):
            log.warning("custom summary: %s", text)
        else:
            to.write(f"custom summary: {text}\n")
            to.flush()
    stream.close()


def _read_capped(stream: IO[bytes], deadline: float, proc: subprocess.Popen[bytes]) -> bytes | None:
    """Everything ``stream`` gives until EOF, or None past :data:`MAX_RESULT_BYTES`.

    Raises ``subprocess.TimeoutExpired`` past ``deadline``.
    """
    import selectors

    chunks: list[bytes] = []
    size = 0
    fd = stream.fileno()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                raise subprocess.TimeoutExpired(proc.args, 0)
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_RESULT_BYTES:
                return None
            chunks.append(chunk)


def parse_result(raw: bytes) -> dict[str, Any]:
    """The process' reply, checked: ``{"custom": {...}}`` or ``{"failed": "message"}``.

    Raises :class:`CustomSummaryFailed` for anything else.
    """

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not a finite number")

    try:
        reply = json.loads(raw.decode("utf-8"), parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise CustomSummaryFailed(f"custom summary: its result is not valid JSON ({exc})") from None
    if isinstance(reply, dict) and set(reply) == {"failed"} and isinstance(reply["failed"], str):
        return {"failed": reply["failed"][:2000]}
    if not (isinstance(reply, dict) and set(reply) == {"custom"}
            and isinstance(reply["custom"], dict)):  # fmt: skip
        raise CustomSummaryFailed("custom summary: its result is not a JSON object")
    problem = _check(reply["custom"], 0)
    if problem:
        raise CustomSummaryFailed(f"custom summary: its result is not valid: {problem}")
    return reply  # type: ignore[no-any-return]


def _check(value: Any, depth: int) -> str | None:
    """Why ``value`` is not a plain JSON value of finite numbers, or None."""
    if depth > MAX_DEPTH:
        return f"nested more than {MAX_DEPTH} deep"
    if value is None or isinstance(value, bool | str | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number is not finite"
    if isinstance(value, list):
        return next((p for v in value if (p := _check(v, depth + 1))), None)
    if isinstance(value, dict):
        return next((p for v in value.values() if (p := _check(v, depth + 1))), None)
    return f"a value of type {type(value).__name__}"


# --- the confined process -----------------------------------------------------------
def _hadoop_user_on_launch() -> None:
    """Give Hadoop a login user as soon as pyspark has started the JVM.

    Hadoop's login asks the system for the name of the process' uid, which a sandbox's
    uid does not have, and fails; a user set here is taken instead.
    """
    from pyspark import SparkContext

    launch = SparkContext._ensure_initialized.__func__  # type: ignore[attr-defined]

    def ensure(cls: Any, instance: Any = None, gateway: Any = None, conf: Any = None) -> None:
        first = cls._gateway is None
        launch(cls, instance, gateway, conf)
        if first:
            ugi = cls._jvm.org.apache.hadoop.security.UserGroupInformation
            ugi.setLoginUser(ugi.createRemoteUser(_USER))

    SparkContext._ensure_initialized = classmethod(ensure)  # type: ignore[method-assign,assignment]


def _summarize(request: CustomRequest) -> dict[str, Any]:
    from .errors import ModelError
    from .model import resolve
    from .requirements import activate

    if request.requirements_dir:
        activate(Path(request.requirements_dir))
    try:
        custom = resolve(Path(request.model_dir), request.entrypoint)
    except ModelError as exc:
        return {"failed": exc.format_message()}
    tmp = os.environ["TMPDIR"]
    os.environ["SPARK_USER"] = _USER
    # The JVM ignores TMPDIR and takes its home from the (missing) passwd entry.
    os.environ["SPARK_SUBMIT_OPTS"] = (
        f"-Djava.io.tmpdir={tmp} -Duser.home={os.environ['HOME']}"
        " -Dio.netty.machineId=02:00:00:00:00:01"  # no hardware address to take one from
    )
    _hadoop_user_on_launch()
    from pyspark.sql import functions as F

    from .spark import spark_session
    from .summary import _run_custom

    master = request.master if request.master.startswith("local") else "local[*]"
    spark = spark_session(master, app_name="ancho-custom-summary")
    df = spark.read.parquet(request.parquet)
    if "status" in df.columns:
        df = df.filter(F.col("status") == "ok")
    return {"custom": _run_custom(custom, df, request.outputs, dict(request.params))}


def main() -> None:
    """Entry point, inside the sandbox: the request on stdin, the reply on stdout."""
    tempfile.tempdir = os.environ.get("TMPDIR")
    # The reply gets the real stdout; everything printed (by summarize, by Spark) goes to
    # stderr, so nothing the model prints can be taken for the reply.
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    request = CustomRequest(**json.loads(sys.stdin.read()))
    try:
        reply = _summarize(request)
    except Exception as exc:
        import traceback

        traceback.print_exc()
        reply = {"failed": f"{type(exc).__name__}: {exc}"}
    with os.fdopen(reply_fd, "w") as out:
        json.dump(reply, out, allow_nan=False)
    sys.stdout.flush()
    sys.stderr.flush()
    # PID 1 of its namespace: exiting ends the JVM and Python workers with it.
    os._exit(0)


if __name__ == "__main__":
    main()
