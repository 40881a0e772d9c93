"""Run a real single-node Cassandra 5.0 for development and tests: ``make cassandra``.

``python scripts/cassandra_node.py start|stop|status``. ``start`` fetches
``org.apache.cassandra:cassandra-all`` and its dependencies from Maven Central (cached in
``.cache/``), writes a ``cassandra.yaml`` (password authentication, role-based
authorisation, loopback only, data under ``.cache/cassandra/data``), starts Cassandra as
its own JVM on Java 17 with the JPMS flags of Cassandra's ``conf/jvm17-server.options``
and the jamm agent, waits until CQL answers, replaces the default ``cassandra``
superuser with an Ancho admin role, and writes the admin store URL to
``.ancho/cassandra.url``. A second ``start`` finds it running and only checks it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "cassandra"
LIB = CACHE / "lib"
HOME = CACHE / "node"
URL_FILE = ROOT / ".ancho" / "cassandra.url"
PID_FILE = HOME / "cassandra.pid"
HOST, CQL_PORT, STORAGE_PORT = "127.0.0.1", 9042, 7000
ADMIN_KEYSPACE = "ancho"

# From Cassandra's conf/jvm17-server.options (JPMS, G1, Netty) and jvm-server.options.
JVM17_OPTIONS = [
    "-XX:+UseG1GC",
    "-XX:+ParallelRefProcEnabled",
    "-XX:MaxTenuringThreshold=1",
    "-XX:G1HeapRegionSize=16m",
    "-XX:G1RSetUpdatingPauseTimePercent=5",
    "-XX:MaxGCPauseMillis=300",
    "-XX:InitiatingHeapOccupancyPercent=70",
    "-Djdk.attach.allowAttachSelf=true",
    "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
    "--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
    "--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
    "--add-exports", "java.sql/java.sql=ALL-UNNAMED",
    "--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
    "--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
    "--add-exports", "jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED",
    "--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
    "--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
    "--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
    "--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens", "java.base/java.io=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
    "--add-opens", "jdk.compiler/com.sun.tools.javac=ALL-UNNAMED",
    "--add-opens", "java.base/java.lang=ALL-UNNAMED",
    "--add-opens", "java.base/java.util=ALL-UNNAMED",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dio.netty.allocator.useCacheForAllThreads=true",
    "-Dio.netty.allocator.maxOrder=11",
    "-Xss256k",
    "-XX:+UseTLAB",
    "-XX:+ResizeTLAB",
    "-XX:+UseNUMA",
    "-XX:+PerfDisableSharedMem",
    "-Djava.net.preferIPv4Stack=true",
]  # fmt: skip


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"cassandra: {message}\n")


SPARK_JARS = ROOT / ".cache" / "spark-jars"


def _maven_copy(pom: Path, into: Path) -> None:
    subprocess.run(
        ["mvn", "-q", "-B", "-f", str(pom), f"-Dmaven.repo.local={ROOT / '.cache' / 'm2'}",
         "dependency:copy-dependencies", f"-DoutputDirectory={into}", "-DincludeScope=runtime"],
        check=True,
    )  # fmt: skip


def fetch() -> None:
    """Cassandra's jars, and the Spark connector's, from Maven Central (once, cached)."""
    if not (LIB.is_dir() and any(LIB.glob("cassandra-all-*.jar"))):
        log("fetching cassandra-all and its dependencies from Maven Central")
        _maven_copy(ROOT / "cassandra" / "pom.xml", LIB)
    if not (SPARK_JARS.is_dir() and any(SPARK_JARS.glob("spark-cassandra-connector_*.jar"))):
        log("fetching the Spark Cassandra connector from Maven Central")
        _maven_copy(ROOT / "cassandra" / "spark-connector-pom.xml", SPARK_JARS)


def write_config() -> Path:
    """cassandra.yaml (only keys 5.0 knows) and logback.xml under .cache/cassandra/node."""
    data = HOME / "data"
    for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    yaml = f"""\
cluster_name: ancho-dev
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: PasswordAuthenticator
authorizer: CassandraAuthorizer
role_manager: CassandraRoleManager
roles_validity: 0ms
permissions_validity: 0ms
credentials_validity: 0ms
data_file_directories:
  - {data / "data"}
commitlog_directory: {data / "commitlog"}
saved_caches_directory: {data / "saved_caches"}
hints_directory: {data / "hints"}
cdc_raw_directory: {data / "cdc_raw"}
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "{HOST}:{STORAGE_PORT}"
listen_address: {HOST}
rpc_address: {HOST}
storage_port: {STORAGE_PORT}
native_transport_port: {CQL_PORT}
start_native_transport: true
endpoint_snitch: SimpleSnitch
concurrent_reads: 16
concurrent_writes: 16
concurrent_counter_writes: 16
batch_size_warn_threshold: 64KiB
batch_size_fail_threshold: 640KiB
"""
    config = HOME / "cassandra.yaml"
    config.write_text(yaml)
    (HOME / "logback.xml").write_text(f"""\
<configuration scan="false">
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{data / "logs" / "system.log"}</file>
    <encoder><pattern>%-5level [%thread] %date{{ISO8601}} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <filter class="ch.qos.logback.classic.filter.ThresholdFilter"><level>WARN</level></filter>
    <encoder><pattern>%-5level %date{{HH:mm:ss}} %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/><appender-ref ref="STDOUT"/></root>
</configuration>
""")
    return config


def running_pid() -> int | None:
    """The pid of our Cassandra if it is alive."""
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def cql_open(timeout: float = 0.5) -> bool:
    """Whether something accepts connections on the CQL port."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((HOST, CQL_PORT)) == 0


def launch(config: Path) -> int:
    """Start the JVM in the background; return its pid."""
    jamm = sorted(LIB.glob("jamm-*.jar"))
    if not jamm:
        raise SystemExit("cassandra: jamm agent jar missing from .cache/cassandra/lib")
    heap = os.environ.get("ANCHO_CASSANDRA_HEAP", "1G")
    cmd = [
        shutil.which("java") or "java",
        *JVM17_OPTIONS,
        f"-Xms{heap}",
        f"-Xmx{heap}",
        f"-javaagent:{jamm[-1]}",
        "-Dcassandra-foreground=yes",
        f"-Dcassandra.config=file://{config}",
        f"-Dlogback.configurationFile=file://{HOME / 'logback.xml'}",
        f"-Dcassandra.logdir={HOME / 'data' / 'logs'}",
        f"-Dcassandra.storagedir={HOME / 'data'}",
        "-Dcassandra.superuser_setup_delay_ms=0",
        "-Dcassandra.skip_wait_for_gossip_to_settle=0",
        "-Dcassandra.ring_delay_ms=1000",
        "-Dcassandra.jmx.local.port=7199",
        "-cp",
        f"{LIB}/*",
        "org.apache.cassandra.service.CassandraDaemon",
    ]
    out = (HOME / "data" / "logs" / "stdout.log").open("ab")
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    PID_FILE.write_text(str(proc.pid))
    return proc.pid


def wait_for_cql(pid: int, timeout: float) -> None:
    """Until the CQL port answers; fail early if the JVM died."""
    deadline = time.monotonic() + timeout
    while not cql_open():
        if running_pid() != pid:
            tail = (HOME / "data" / "logs" / "stdout.log").read_text(errors="replace")[-3000:]
            raise SystemExit(f"cassandra: the JVM exited during start:\n{tail}")
        if time.monotonic() > deadline:
            raise SystemExit(f"cassandra: CQL did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def setup_admin() -> str:
    """Replace the default superuser by an Ancho admin role; return the admin store URL."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    saved = HOME / "admin.url"  # kept with the data: the password lives as long as they do
    if saved.is_file():
        url = saved.read_text().strip()
        URL_FILE.parent.mkdir(parents=True, exist_ok=True)
        URL_FILE.write_text(url + "\n")
        return url
    password = secrets.token_urlsafe(18)
    deadline = time.monotonic() + 120
    while True:  # the default role appears a moment after CQL opens
        try:
            default = PlainTextAuthProvider("cassandra", "cassandra")
            cluster = Cluster([HOST], port=CQL_PORT, auth_provider=default)
            session = cluster.connect()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    exists = session.execute("SELECT role FROM system_auth.roles WHERE role = 'ancho_admin'")
    verb = "ALTER" if exists.one() else "CREATE"  # a half-finished earlier setup left it
    for attempt in range(10):
        try:
            session.execute(
                f"{verb} ROLE ancho_admin WITH PASSWORD = '{password}'"
                " AND SUPERUSER = true AND LOGIN = true"
            )
            break
        except Exception:
            if attempt == 9:
                raise
            time.sleep(1)  # Cassandra rate-limits password changes of one role
    cluster.shutdown()
    admin = PlainTextAuthProvider("ancho_admin", password)
    cluster = Cluster([HOST], port=CQL_PORT, auth_provider=admin)
    session = cluster.connect()
    session.execute("ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false")
    cluster.shutdown()
    url = f"cassandra://ancho_admin:{password}@{HOST}:{CQL_PORT}/{ADMIN_KEYSPACE}"
    saved.write_text(url + "\n")
    saved.chmod(0o600)
    URL_FILE.parent.mkdir(parents=True, exist_ok=True)
    URL_FILE.write_text(url + "\n")
    URL_FILE.chmod(0o600)
    return url


def start(timeout: float) -> None:
    """Start (or find running) Cassandra and make sure the admin URL works."""
    HOME.mkdir(parents=True, exist_ok=True)
    pid = running_pid()
    if pid is not None and cql_open():
        fetch()
        log(f"running (pid {pid}); admin URL in {URL_FILE}")
        setup_admin()
        return
    if pid is None and cql_open():
        raise SystemExit(f"cassandra: port {CQL_PORT} is taken by another process")
    fetch()
    config = write_config()
    started = time.monotonic()
    if pid is None:
        pid = launch(config)
    wait_for_cql(pid, timeout)
    setup_admin()
    log(f"started in {time.monotonic() - started:.1f} s (pid {pid}); admin URL in {URL_FILE}")


def stop() -> None:
    """Stop Cassandra (SIGTERM, then SIGKILL after 30 s)."""
    pid = running_pid()
    if pid is None:
        log("not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while running_pid() == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if running_pid() == pid:
        os.kill(pid, signal.SIGKILL)
    PID_FILE.unlink(missing_ok=True)
    log("stopped")


def main() -> None:
    """CLI: start | stop | status."""
    parser = argparse.ArgumentParser(prog="cassandra_node.py")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    if args.command == "start":
        start(args.timeout)
    elif args.command == "stop":
        stop()
    else:
        pid = running_pid()
        print(f"running (pid {pid})" if pid and cql_open() else "not running")
        raise SystemExit(0 if pid else 1)


if __name__ == "__main__":
    main()
