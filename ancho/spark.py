"""The Spark session the summary job runs in, tuned for a small machine.

One session per process: Spark's JVM gateway, its static configuration (driver memory,
jars, JVM options) and ``SparkSession.getOrCreate`` are process-wide, so this module keeps
the one session it made (and its scratch directory) and hands it out again.

On Java 17, pyspark 3.5's launcher already adds the ``--add-opens`` flags Spark needs
(``JavaModuleOptions``); the only JVM option added here for the JDK is
``-Dio.netty.tryReflectionSetAccessible=true``, which Arrow-based pyspark features (pandas
UDFs, ``mapInArrow``, used by some custom summaries when pandas is installed) need on
Java 9 and later.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from pyspark.sql import SparkSession

__all__ = ["spark_session", "stop_spark"]

log = logging.getLogger(__name__)

# Warnings and errors only, on stderr, so `ancho run --json` keeps a clean stdout. Hadoop's
# "Unable to load native-hadoop library" warning is noise on every start.
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.nativeloader.name = org.apache.hadoop.util.NativeCodeLoader
logger.nativeloader.level = error
"""

_JVM_OPTIONS = "-Dio.netty.tryReflectionSetAccessible=true"

_lock = threading.Lock()
_session: SparkSession | None = None
_master: str | None = None
_scratch: Path | None = None


def spark_session(
    master: str = "local[*]",
    *,
    app_name: str = "ancho-summary",
    jars: Sequence[str] = (),
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """Return the process's Spark session, starting it on first use (a few seconds).

    ``master`` is ``local[*]`` / ``local[N]`` on one machine or ``mesos://…`` on a cluster.
    ``jars`` are added to ``spark.jars`` (e.g. the spark-cassandra-connector); ``conf``
    entries override the defaults set here (UI off, 4 shuffle partitions, 2g driver memory,
    in-memory catalog, scratch space in a temporary directory, WARN logging on stderr).

    A session made here is reused while ``master`` is the same; asking for another master
    stops it and starts a new one, because jars, driver memory and JVM options cannot
    change in a running JVM. ``jars`` and ``conf`` are applied only when a session starts.
    """
    global _session, _master, _scratch
    with _lock:
        if _session is not None:
            if _master == master and _session_alive(_session):
                return _session
            _stop_locked()

        scratch = Path(tempfile.mkdtemp(prefix="ancho-spark-"))
        # pyspark kills its JVM at interpreter exit without stop(); without this the
        # scratch directory of every process that did not call stop_spark() would stay.
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        log4j = scratch / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        java_options = f"-Dlog4j2.configurationFile={log4j.as_uri()} {_JVM_OPTIONS}"
        local = master.startswith("local")

        settings: dict[str, str] = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.driver.memory": "2g",
            "spark.sql.catalogImplementation": "in-memory",
            "spark.sql.warehouse.dir": str(scratch / "warehouse"),
            # The summary aggregate has a few expressions per output; a longer limit keeps
            # Spark from warning that it truncated the plan's description.
            "spark.sql.debug.maxToStringFields": "1000",
            "spark.driver.extraJavaOptions": java_options,
            "spark.executor.extraJavaOptions": _JVM_OPTIONS,
            # Python workers (custom summaries with UDFs) must run in this interpreter,
            # whose environment has the model's requirements.
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
        }
        if local or master.startswith("spark://127."):
            # A local session talks only to itself, and a cluster on loopback (`ancho
            # cluster`'s) reaches the driver there: keep it off the network.
            settings["spark.driver.host"] = "127.0.0.1"
            settings["spark.driver.bindAddress"] = "127.0.0.1"
        if jars:
            settings["spark.jars"] = ",".join(jars)
        settings.update(conf or {})

        builder = SparkSession.builder.master(master).appName(app_name)
        for key, value in settings.items():
            builder = builder.config(key, value)
        try:
            with _launch_env(scratch, local):
                session = builder.getOrCreate()
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        session.sparkContext.setLogLevel("WARN")
        _session, _master, _scratch = session, master, scratch
        log.info("spark session started: master=%s scratch=%s", master, scratch)
        return session


def stop_spark() -> None:
    """Stop the session made by :func:`spark_session` (if any) and remove its scratch space."""
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    global _session, _master, _scratch
    if _session is not None:
        _session.stop()
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)
    _session, _master, _scratch = None, None, None


def _session_alive(session: SparkSession) -> bool:
    # Someone may have called session.stop() directly; the object then still exists.
    jsc = session.sparkContext._jsc
    return jsc is not None and not jsc.sc().isStopped()


@contextlib.contextmanager
def _launch_env(scratch: Path, local: bool) -> Iterator[None]:
    """Set environment variables that the JVM reads when pyspark launches it.

    SPARK_LOCAL_DIRS puts shuffle and spill files in the session's scratch directory
    (``spark.local.dir`` would do too, but Spark warns on every start that a cluster
    manager may override it). For a local master, SPARK_LOCAL_IP keeps the session on
    loopback: otherwise a host whose name resolves to 127.0.0.1 makes Spark warn "Your
    hostname resolves to a loopback address" and pick an external interface for a
    session that only talks to itself. Values already set by the user win.
    """
    wanted = {"SPARK_LOCAL_DIRS": str(scratch / "local")}
    if local:
        wanted["SPARK_LOCAL_IP"] = "127.0.0.1"
    added = [key for key in wanted if key not in os.environ]
    for key in added:
        os.environ[key] = wanted[key]
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
