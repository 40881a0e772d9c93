"""A real Cassandra 5.0, one node or a ring of ``K`` on loopback addresses.

The jars (``org.apache.cassandra:cassandra-all`` and its runtime dependencies) are
fetched once with Maven into the download cache (:mod:`ancho.cluster.downloads`).
:class:`CassandraNode` writes a node's ``cassandra.yaml`` (password authentication,
role-based authorisation, its own listen and CQL address, the ring's seed) and
``logback.xml``, and starts ``CassandraDaemon`` as its own JVM on Java 17 with the JPMS
flags of Cassandra's ``conf/jvm17-server.options`` and the jamm agent. Each node of a
ring has its own address and the same ports (Cassandra wants one storage port across a
ring) and its own local JMX port.

:func:`setup_admin` replaces the default ``cassandra`` superuser by an ``ancho_admin``
role, and :func:`start_ring` starts a ring as Cassandra wants it started: the seed
first, then ``system_auth`` given ``min(3, K)`` replicas while it is alone (so each
node that joins afterwards streams its copy of the roles as it bootstraps), then the
other nodes one at a time. ``make cassandra`` (``scripts/cassandra_node.py``) runs one
node; ``ancho cluster start --cassandra K`` runs a ring.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClusterError
from ..store.cassandra import replication_factor
from .downloads import maven_jars

CASSANDRA_VERSION = "5.0.9"
CQL_PORT, STORAGE_PORT = 9042, 7000
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


def cassandra_jars() -> Path:
    """The folder holding Cassandra's jars (fetched on first use)."""
    return maven_jars(
        f"cassandra-{CASSANDRA_VERSION}",
        [("org.apache.cassandra", "cassandra-all", CASSANDRA_VERSION)],
    )


def cql_open(host: str, port: int = CQL_PORT, timeout: float = 0.5) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


@dataclass(slots=True)
class CassandraNode:
    """One Cassandra node whose configuration, data and logs live in ``folder``."""

    folder: Path
    host: str = "127.0.0.1"
    seeds: list[str] = field(default_factory=list)  # default: itself
    cluster_name: str = "ancho-dev"
    jmx_port: int = 7199
    heap: str = "1G"
    #: Cassandra's ring delay: how long a joining node listens to gossip before it
    #: bootstraps (Cassandra's default is 30 s; a lone node needs none).
    ring_delay_ms: int = 1000
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{CQL_PORT}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.data / "logs" / "stdout.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "cassandra.pid"

    def write_config(self) -> Path:
        """``cassandra.yaml`` (only keys 5.0 knows) and ``logback.xml`` in the folder."""
        data = self.data
        for sub in ("data", "commitlog", "saved_caches", "hints", "cdc_raw", "logs"):
            (data / sub).mkdir(parents=True, exist_ok=True)
        seeds = ",".join(f"{s}:{STORAGE_PORT}" for s in (self.seeds or [self.host]))
        yaml = f"""\
cluster_name: {self.cluster_name}
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
      - seeds: "{seeds}"
listen_address: {self.host}
rpc_address: {self.host}
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
        config = self.folder / "cassandra.yaml"
        config.write_text(yaml)
        (self.folder / "logback.xml").write_text(f"""\
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

    def command(self, lib: Path) -> list[str]:
        """The JVM's command line."""
        jamm = sorted(lib.glob("jamm-*.jar"))
        if not jamm:
            raise ClusterError(f"the jamm agent jar is missing from {lib}")
        config = self.folder / "cassandra.yaml"
        return [
            shutil.which("java") or "java",
            *JVM17_OPTIONS,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            f"-javaagent:{jamm[-1]}",
            "-Dcassandra-foreground=yes",
            f"-Dcassandra.config=file://{config}",
            f"-Dlogback.configurationFile=file://{self.folder / 'logback.xml'}",
            f"-Dcassandra.logdir={self.data / 'logs'}",
            f"-Dcassandra.storagedir={self.data}",
            "-Dcassandra.superuser_setup_delay_ms=0",
            "-Dcassandra.skip_wait_for_gossip_to_settle=0",
            f"-Dcassandra.ring_delay_ms={self.ring_delay_ms}",
            f"-Dcassandra.jmx.local.port={self.jmx_port}",
            "-cp",
            f"{lib}/*",
            "org.apache.cassandra.service.CassandraDaemon",
        ]

    def running_pid(self) -> int | None:
        """The node's pid if it is alive."""
        if self.process is not None and self.process.poll() is not None:
            return None  # our child exited (reaped, not a zombie that looks alive)
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def launch(self) -> int:
        """Write the configuration and start the JVM in its own session; return its pid."""
        if shutil.which("java") is None:
            raise ClusterError("Cassandra needs Java 17 (`java` is not on PATH)")
        lib = cassandra_jars()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.write_config()
        out = self.log_file.open("ab")
        try:
            self.process = subprocess.Popen(
                self.command(lib), stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True, cwd=self.folder,
            )  # fmt: skip
        finally:
            out.close()
        self.pid_file.write_text(str(self.process.pid))
        return self.process.pid

    def wait_for_cql(self, pid: int, timeout: float) -> None:
        """Until CQL answers on the node's address; fail early if the JVM died."""
        deadline = time.monotonic() + timeout
        while not cql_open(self.host):
            if self.running_pid() != pid:
                with_tail = self.log_file.read_text(errors="replace")[-3000:]
                raise ClusterError(
                    f"Cassandra at {self.address} exited while starting:\n{with_tail}"
                )
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"Cassandra at {self.address} did not answer CQL within {timeout:.0f} s;"
                    f" see {self.log_file}"
                )
            time.sleep(0.5)

    def start(self, timeout: float = 240.0) -> int:
        """Launch the node and wait until it answers CQL; return its pid."""
        pid = self.launch()
        self.wait_for_cql(pid, timeout)
        return pid

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        pid = self.running_pid()
        if pid is None:
            return
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.running_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.running_pid() == pid:
            os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)


def _session(hosts: list[str], user: str, password: str, timeout: float = 120.0) -> Any:
    """A driver cluster and session, retried while the default role is still being made."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import Cluster

    deadline = time.monotonic() + timeout
    while True:
        cluster = Cluster(hosts, port=CQL_PORT, auth_provider=PlainTextAuthProvider(user, password))
        try:
            return cluster, cluster.connect()
        except Exception:
            cluster.shutdown()
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def setup_admin(node: CassandraNode, *, auth_replicas: int = 1) -> str:
    """Replace the default superuser by an ``ancho_admin`` role, give ``system_auth``
    ``auth_replicas`` copies, and return the admin store URL (kept with the data in the
    node's ``admin.url``: the password lives as long as they do)."""
    saved = node.folder / "admin.url"
    if saved.is_file():
        return saved.read_text().strip()
    password = secrets.token_urlsafe(18)
    cluster, session = _session([node.host], "cassandra", "cassandra")
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
    cluster, session = _session([node.host], "ancho_admin", password)
    session.execute("ALTER ROLE cassandra WITH SUPERUSER = false AND LOGIN = false")
    if auth_replicas > 1:
        session.execute(
            "ALTER KEYSPACE system_auth WITH replication ="
            f" {{'class': 'SimpleStrategy', 'replication_factor': {auth_replicas}}}"
        )
    cluster.shutdown()
    url = f"cassandra://ancho_admin:{password}@{node.host}:{CQL_PORT}/{ADMIN_KEYSPACE}"
    saved.write_text(url + "\n")
    saved.chmod(0o600)
    return url


def ring_url(admin_url: str, hosts: list[str]) -> str:
    """The admin URL naming every node of the ring as a contact point."""
    prefix, _, rest = admin_url.partition("@")
    _, _, keyspace = rest.partition("/")
    return f"{prefix}@{','.join(hosts)}:{CQL_PORT}/{keyspace}"


def start_ring(
    nodes: list[CassandraNode], *, timeout: float = 240.0,
    on_started: Callable[[CassandraNode, int], None] | None = None,
) -> str:  # fmt: skip
    """Start a fresh ring (the first node is its seed) one node at a time; return the
    admin URL naming every node. ``on_started(node, pid)`` records each as it starts."""
    seed, *others = nodes
    on_started = on_started or (lambda _node, _pid: None)
    on_started(seed, seed.start(timeout))
    admin = setup_admin(seed, auth_replicas=replication_factor(len(nodes)))
    for node in others:  # Cassandra bootstraps one joining node at a time
        on_started(node, _join(node, timeout))
    return ring_url(admin, [n.host for n in nodes])


def _join(node: CassandraNode, timeout: float) -> int:
    """Start a node that joins the ring. A first bootstrap that gives up ("Unable to
    contact any seeds", when gossip is slow on a loaded machine) is started once more
    from empty data, as an operator would."""
    node.ring_delay_ms = 5000
    try:
        return node.start(timeout)
    except ClusterError:
        if node.running_pid() is not None:
            raise  # still running, only slow: not a failed bootstrap
        shutil.rmtree(node.data, ignore_errors=True)
        return node.start(timeout)
