"""``ancho cluster``: start, inspect, break and stop a development cluster on loopback.

A cluster lives in a folder (``.ancho/cluster`` by default) holding ``cluster.json``,
the record of every process it started (role, address, pid, command line, folder),
and each process's folder with its log. Every command reads that record, so ``status``,
``kill``, ``partition`` and ``stop`` work from any shell; ``stop`` is idempotent and
leaves no process behind (executors included: they run in sandboxes under the
agents' folders, and anything whose working directory is inside the cluster's folder
is killed).

Addresses (all loopback): ZooKeeper ``127.0.0.1:<zk port>``; master ``i`` at
``127.0.0.<1+i>:<master port>``; agent ``i`` at ``127.0.0.<11+i>:<agent port>``;
Cassandra node ``i`` at ``127.0.0.<21+i>:9042``; the Spark master at ``127.0.0.31`` and
worker ``i`` at ``127.0.0.<32+i>``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..embedded.cluster import available_mem_mb
from ..embedded.containerizer import DEFAULT_PATH
from ..embedded.recovery import alive, processes_under
from ..errors import ClusterError
from .cassandra import CassandraNode, ring_url, start_ring
from .partition import Endpoint, heal, partition
from .zookeeper import ZooKeeperNode, four_letter_word

RECORD = "cluster.json"
_START_TIMEOUT_S = 60.0


@dataclass(slots=True)
class Member:
    """One process of the cluster."""

    role: str  # zookeeper | master | agent | cassandra | spark-master | spark-worker | healer
    address: str
    folder: str
    argv: list[str] = field(default_factory=list)
    pid: int = 0
    cpus: float = 0.0
    mem_mb: int = 0
    webui: str = ""  # Spark's processes: the web UI's address


@dataclass(slots=True)
class Layout:
    """Where the cluster's processes listen."""

    zk_port: int = 2181
    master_port: int = 5050
    agent_port: int = 5051
    #: Master flags (tests make them small); Mesos' defaults otherwise.
    agent_ping_timeout_s: float = 15.0
    max_agent_ping_timeouts: int = 5
    #: Master flag: Mesos' default 10 minutes.
    agent_reregister_timeout_s: float = 600.0
    #: Agent flag, Mesos' default: Ancho's executors retry within MESOS_SUBSCRIPTION_BACKOFF_MAX.
    executor_reregistration_timeout_s: float = 2.0
    #: Agent flag, Mesos' default 15 minutes: how long executors wait for a dead agent.
    recovery_timeout_s: float = 900.0
    containerizers: str = "process,docker"
    spark_port: int = 7077
    spark_webui_port: int = 18080
    #: Cassandra node ``i``'s local JMX port is this plus ``i``; its heap.
    cassandra_jmx_port: int = 7200
    cassandra_heap: str = "512M"


def _get_json(address: str, path: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=timeout) as response:
        return json.loads(response.read())


class Cluster:
    """The cluster recorded in ``folder``."""

    def __init__(self, folder: Path, layout: Layout | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.layout = layout or Layout()
        self.members: list[Member] = []
        self._load()

    # ------------------------------------------------------------------ record
    def _load(self) -> None:
        path = self.folder / RECORD
        if path.is_file():
            data = json.loads(path.read_text("utf-8"))
            self.members = [Member(**m) for m in data["members"]]
            self.layout = Layout(**data["layout"])

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"layout": asdict(self.layout), "members": [asdict(m) for m in self.members]}
        tmp = self.folder / (RECORD + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), "utf-8")
        tmp.replace(self.folder / RECORD)

    def of(self, role: str) -> list[Member]:
        return [m for m in self.members if m.role == role]

    @property
    def zk_url(self) -> str:
        return f"zk://127.0.0.1:{self.layout.zk_port}/mesos"

    # ------------------------------------------------------------------- start
    def start(
        self, *, agents: int = 3, masters: int = 1, cpus: float | None = None,
        mem_mb: int | None = None, spark_workers: int = 0, cassandra: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Start ZooKeeper, the masters and the agents, then a ``cassandra``-node ring
        and Spark if asked; return once every agent is registered with the leading
        master and every other part answers."""
        if any(alive(m.pid) for m in self.members):
            raise ClusterError(
                f"a cluster is already running from {self.folder} "
                "(`ancho cluster status`, `ancho cluster stop`)"
            )
        if not 1 <= masters <= 9 or not 1 <= agents <= 200 or not 0 <= cassandra <= 9:
            raise ClusterError("--masters must be 1-9, --agents 1-200 and --cassandra 0-9")
        self.members = []
        per_cpus = cpus if cpus is not None else max(0.1, (os.cpu_count() or 1) / agents)
        per_mem = mem_mb if mem_mb is not None else max(256, available_mem_mb() // agents)
        try:
            self._start_zookeeper()
            for i in range(masters):
                self._start(self._master_member(i))
            for i in range(agents):
                self._start(self._agent_member(i, per_cpus, per_mem))
            self._save()
            self.wait_registered(agents)
            if cassandra:
                self._start_cassandra(cassandra)
                self._save()
            if spark_workers:
                self._start_spark(spark_workers)
                self._save()
        except BaseException:
            self._save()
            self.stop()
            raise
        return self.status()

    def _start_zookeeper(self) -> None:
        folder = self.folder / "zookeeper"
        node = ZooKeeperNode(folder, port=self.layout.zk_port)
        node.start()
        member = Member("zookeeper", node.address, str(folder), pid=node.pid or 0)
        self.members.append(member)

    def _cassandra_node(self, i: int) -> CassandraNode:
        """Node ``i`` of the ring: its folder, address and JMX port; node 0 is the seed."""
        return CassandraNode(
            self.folder / f"cassandra-{i}", host=f"127.0.0.{21 + i}", seeds=["127.0.0.21"],
            cluster_name="ancho-dev-ring", jmx_port=self.layout.cassandra_jmx_port + i,
            heap=self.layout.cassandra_heap,
        )  # fmt: skip

    def _start_cassandra(self, count: int) -> None:
        def started(node: CassandraNode, pid: int) -> None:
            self.members.append(Member("cassandra", node.address, str(node.folder), pid=pid))
            self._save()

        start_ring([self._cassandra_node(i) for i in range(count)], on_started=started)

    def _cassandra_status(self) -> dict[str, Any] | None:
        nodes = self.of("cassandra")
        if not nodes:
            return None
        saved = Path(nodes[0].folder) / "admin.url"
        hosts = [n.address.split(":")[0] for n in nodes]
        return {
            "url": ring_url(saved.read_text().strip(), hosts) if saved.is_file() else None,
            "nodes": [{"address": n.address, "pid": n.pid if alive(n.pid) else None}
                      for n in nodes],
        }  # fmt: skip

    def _start_spark(self, workers: int) -> None:
        from . import spark

        ip, port, webui = spark.MASTER_IP, self.layout.spark_port, self.layout.spark_webui_port
        folder = self.folder / "spark-master"
        argv = spark.command("master", ip, port, webui)
        master = Member("spark-master", f"{ip}:{port}", str(folder), argv, webui=f"{ip}:{webui}")
        master.pid = spark.start(argv, folder, ip).pid
        self.members.append(master)
        url = f"spark://{ip}:{port}"
        for i in range(workers):
            wip = f"127.0.0.{32 + i}"
            folder = self.folder / f"spark-worker-{i}"
            argv = spark.command("worker", wip, port + 1, webui + 1, url)
            worker = Member("spark-worker", f"{wip}:{port + 1}", str(folder), argv,
                            webui=f"{wip}:{webui + 1}")  # fmt: skip
            worker.pid = spark.start(argv, folder, wip).pid
            self.members.append(worker)
        spark.wait_workers(
            master.webui, workers,
            lambda: all(alive(m.pid) for m in self.of("spark-master") + self.of("spark-worker")),
        )  # fmt: skip

    def _master_member(self, i: int) -> Member:
        ip = f"127.0.0.{1 + i}"
        folder = self.folder / f"master-{i}"
        argv = [
            sys.executable, "-m", "ancho.embedded.node", "master",
            "--ip", ip, "--port", str(self.layout.master_port), "--work-dir", str(folder),
            "--zk", self.zk_url,
            "--agent-ping-timeout", str(self.layout.agent_ping_timeout_s),
            "--max-agent-ping-timeouts", str(self.layout.max_agent_ping_timeouts),
            "--agent-reregister-timeout", str(self.layout.agent_reregister_timeout_s),
        ]  # fmt: skip
        return Member("master", f"{ip}:{self.layout.master_port}", str(folder), argv)

    def _agent_member(self, i: int, cpus: float, mem_mb: int) -> Member:
        ip = f"127.0.0.{11 + i}"
        folder = self.folder / f"agent-{i}"
        # An agent with Ancho installed: this install's ancho-executor on the executors'
        # PATH, and a cache of models and requirements of the agent's own.
        environment = {"PATH": f"{Path(sys.executable).parent}:{DEFAULT_PATH}",
                       "ANCHO_CACHE_DIR": str(folder / "cache")}  # fmt: skip
        argv = [
            sys.executable, "-m", "ancho.embedded.node", "agent",
            "--ip", ip, "--port", str(self.layout.agent_port), "--work-dir", str(folder),
            "--master", self.zk_url, "--cpus", f"{cpus:g}", "--mem-mb", str(mem_mb),
            "--containerizers", self.layout.containerizers,
            "--executor-reregistration-timeout",
            str(self.layout.executor_reregistration_timeout_s),
            "--executor-environment-variables", json.dumps(environment),
            "--recovery-timeout", str(self.layout.recovery_timeout_s),
        ]  # fmt: skip
        return Member(
            "agent", f"{ip}:{self.layout.agent_port}", str(folder), argv, cpus=cpus, mem_mb=mem_mb
        )

    def _start(self, member: Member, *, append: bool = True) -> None:
        folder = Path(member.folder)
        folder.mkdir(parents=True, exist_ok=True)
        log = open(folder / f"{member.role}.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            process = subprocess.Popen(
                member.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, cwd=folder,
            )  # fmt: skip
        finally:
            log.close()
        member.pid = process.pid
        if append:
            self.members.append(member)
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ClusterError(
                    f"the {member.role} at {member.address} exited with {process.returncode}"
                    f" while starting; see {folder / (member.role + '.log')}"
                )
            try:
                _get_json(member.address, "/version", timeout=0.5)
                return
            except OSError:
                time.sleep(0.05)
        raise ClusterError(f"the {member.role} at {member.address} did not start in time")

    def leader(self) -> str | None:
        """The leading master's address (None when there is none)."""
        for master in self.of("master"):
            if not alive(master.pid):
                continue
            try:
                state = _get_json(master.address, "/master/state")
            except OSError:
                continue
            pid = str(state.get("leader") or "")
            if pid.startswith("master@"):
                return pid.removeprefix("master@")
        return None

    def wait_registered(self, agents: int, timeout: float = _START_TIMEOUT_S) -> None:
        """Wait until the leading master lists ``agents`` registered agents."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                try:
                    if len(_get_json(leader, "/master/state")["slaves"]) >= agents:
                        return
                except OSError:
                    pass
            time.sleep(0.1)
        raise ClusterError(f"{agents} agents did not all register within {timeout:.0f} s")

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The contract's ``ancho cluster status`` JSON."""
        leader = self.leader()
        registered: dict[str, str] = {}
        if leader is not None:
            try:
                for agent in _get_json(leader, "/master/state")["slaves"]:
                    registered[f"{agent['hostname']}:{agent['port']}"] = agent["id"]
            except OSError:
                pass
        zookeeper = next(iter(self.of("zookeeper")), None)
        return {
            "master": self.zk_url,
            "masters": [
                {
                    "address": m.address,
                    "pid": m.pid if alive(m.pid) else None,
                    "leader": m.address == leader,
                }
                for m in self.of("master")
            ],
            "agents": [
                {
                    "id": registered.get(a.address),
                    "address": a.address,
                    "pid": a.pid if alive(a.pid) else None,
                    "registered": a.address in registered,
                    "resources": {"cpus": a.cpus, "mem_mb": a.mem_mb},
                }
                for a in self.of("agent")
            ],
            "zookeeper": None
            if zookeeper is None
            else {
                "address": zookeeper.address,
                "pid": zookeeper.pid if alive(zookeeper.pid) else None,
            },
            "cassandra": self._cassandra_status(),
            "spark": self._spark_status(),
        }

    def _spark_status(self) -> dict[str, Any] | None:
        masters = self.of("spark-master")
        if not masters:
            return None
        return {
            "master": f"spark://{masters[0].address}",
            "workers": [
                {"address": w.address, "pid": w.pid if alive(w.pid) else None}
                for w in self.of("spark-worker")
            ],
        }

    # ---------------------------------------------------------- kill / restart
    def find(self, kind: str, target: str | None) -> Member:
        """The member ``kill`` names: ``agent ID``, ``leader``, ``master ADDRESS``,
        ``cassandra ADDRESS``, ``zookeeper``."""
        if kind == "zookeeper":
            found = self.of("zookeeper")
        elif kind == "leader":
            leader = self.leader()
            found = [m for m in self.of("master") if m.address == leader]
        elif kind == "master":
            found = [m for m in self.of("master") if m.address == target]
        elif kind == "cassandra":
            found = [m for m in self.of("cassandra")
                     if target in (m.address, m.address.split(":")[0])]  # fmt: skip
        elif kind == "agent":
            ids = {a["address"]: a["id"] for a in self.status()["agents"]}
            found = [a for a in self.of("agent") if target in (ids.get(a.address), a.address)]
        else:
            raise ClusterError(
                f"cannot kill {kind!r}: agent ID, leader, master ADDRESS, cassandra ADDRESS,"
                " zookeeper"
            )
        if not found:
            raise ClusterError(f"no {kind} {target or ''} in the cluster at {self.folder}".strip())
        return found[0]

    def kill(self, kind: str, target: str | None = None, *, restart: bool = False) -> Member:
        """SIGKILL a member's process; with ``restart``, start it again as it was."""
        member = self.find(kind, target)
        if alive(member.pid):
            os.killpg(member.pid, signal.SIGKILL)
            _wait_dead(member.pid)
        if restart:
            if member.role == "zookeeper":
                node = ZooKeeperNode(Path(member.folder), port=self.layout.zk_port)
                node.start()
                member.pid = node.pid or 0
            elif member.role == "cassandra":
                index = self.of("cassandra").index(member)
                member.pid = self._cassandra_node(index).start()
            else:
                self._start(member, append=False)
        self._save()
        return member

    # --------------------------------------------------------------- partition
    def partition(self, agent: str, seconds: float | None = None) -> None:
        """Drop all traffic between an agent and the masters (for ``seconds``)."""
        member = self.find("agent", agent)
        tag = self._tag(member)
        masters = [Endpoint.parse(m.address) for m in self.of("master")]
        partition(tag, [Endpoint.parse(member.address)], masters)
        if seconds is not None:
            code = (
                "import time, sys; time.sleep(float(sys.argv[1])); "
                "from ancho.cluster.partition import heal; heal(sys.argv[2])"
            )
            healer = subprocess.Popen(
                [sys.executable, "-c", code, str(seconds), tag],
                start_new_session=True, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            self.members.append(Member("healer", member.address, str(self.folder), pid=healer.pid))
            self._save()

    def _tag(self, member: Member) -> str:
        return f"{abs(hash(str(self.folder))) % 10**8}-{member.address}"

    # -------------------------------------------------------------------- stop
    def stop(self) -> None:
        """Stop everything this cluster started (idempotent); heal its partitions."""
        order = {"healer": 0, "agent": 1, "spark-worker": 2, "spark-master": 3, "cassandra": 4,
                 "master": 5, "zookeeper": 6}  # fmt: skip
        for member in sorted(self.members, key=lambda m: order.get(m.role, 9)):
            if alive(member.pid):
                try:
                    os.killpg(member.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        deadline = time.monotonic() + 10.0
        for member in self.members:
            _wait_dead(member.pid, max(0.0, deadline - time.monotonic()))
            if alive(member.pid):
                os.killpg(member.pid, signal.SIGKILL)
                _wait_dead(member.pid)
        for member in self.of("agent"):
            heal(self._tag(member))
        for pid in processes_under(self.folder):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.members = []
        if self.folder.exists():
            self._save()


def _wait_dead(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # our own child: reap it
        time.sleep(0.05)


__all__ = ["Cluster", "Layout", "Member", "alive", "four_letter_word", "processes_under"]
