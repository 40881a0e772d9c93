"""A nemesis for the development cluster, and the world it attacks.

:class:`FaultWorld` is ``ancho cluster`` (ZooKeeper, masters, agents as processes on
their own loopback addresses, optionally a Cassandra ring) with ``ancho server`` processes on
it that elect their leader through the same ZooKeeper (``--zk``), a user, and a store.
A run of a deterministic model goes through a server while :meth:`FaultWorld.inject`
does what clusters do: SIGKILL an executor, an agent (restarted on its work directory
or not), the leading master, the leading server with a standby present, or every
server (restarted later); partition an agent from the masters; stop ZooKeeper; SIGKILL
a Cassandra node and restart it. :func:`schedule` draws faults from a seed.

Used by ``tests/test_faults.py`` (the checks) and ``bench/faults.py`` (the figures).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..client import Client
from ..embedded.recovery import alive, processes_under
from .ports import cluster_port
from .supervisor import Cluster, Layout

#: Every kind of fault the nemesis injects.
KINDS = (
    "executor",  # SIGKILL one executor process
    "agent",  # SIGKILL an agent, not restarted (its tasks are lost)
    "agent-restart",  # SIGKILL an agent and restart it on its work directory
    "master",  # SIGKILL the leading master (restarted after a while, as a standby)
    "partition",  # cut an agent off the masters for longer than the ping timeout
    "server-leader",  # SIGKILL the leading ancho server: a standby takes over
    "server",  # SIGKILL every ancho server (no standby left), restarted later
    "zookeeper",  # stop ZooKeeper for a while, then start it again
    "cassandra",  # SIGKILL a Cassandra node of the ring, restarted later
)

#: The agents' ping timeout here (0.5 s x 4) and how long a partition or an outage lasts.
PING_TIMEOUT_S, PING_TIMEOUTS = 0.5, 4
#: Executors of a dead agent end after this (Mesos' --recovery_timeout, 15 min by default).
RECOVERY_TIMEOUT_S = 10.0
#: How long a supervisor watches for masters and servers to exit after ZooKeeper is back.
SUPERVISE_S = 8.0
OUTAGE_S = {"partition": 4.0, "server": 3.0, "zookeeper": 10.0, "master": 3.0,
            "cassandra": 5.0}  # fmt: skip
_BATCH_LINE = re.compile(r"batch (\d+)\.\.(\d+) (?:runs again: (\S+(?: \S+)?)|will be retried)")


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault of ``kind`` at ``at_s`` seconds into the run."""

    kind: str
    at_s: float


@dataclass(slots=True)
class Injected:
    """A fault as it happened: what it hit, and when the run went on."""

    fault: Fault
    target: str
    at: float
    #: Seconds from the fault until the run stored progress again (None: it had ended).
    recovered_s: float | None = None


def schedule(seed: int, count: int, span_s: float, kinds: tuple[str, ...] = KINDS) -> list[Fault]:
    """``count`` faults over ``span_s`` seconds, every kind once before any repeats (in a
    seeded order), at seeded times at least 2 s apart."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < count:
        batch = list(kinds)
        rng.shuffle(batch)
        order += batch
    gap = span_s / max(count, 1)
    return [Fault(kind, round(i * gap + rng.uniform(0.0, max(gap - 2.0, 0.0)), 2))
            for i, kind in enumerate(order[:count])]  # fmt: skip


@dataclass
class FaultWorld:
    """``ancho cluster`` with ``servers`` ``ancho server`` processes on it and one user, all under
    ``folder``, on loopback. The store is ``store_url`` (the executors and the servers
    share it), the cluster's own ``cassandra``-node ring when one is asked for, or a
    SQLite file."""

    folder: Path
    agents: int = 3
    masters: int = 3
    cpus: float = 1.0
    grace_s: float = 3.0
    servers: int = 2
    cassandra: int = 0
    store_url: str | None = None
    user: str = "nemo"
    cluster: Cluster = field(init=False)
    token: str = ""
    #: The user's own store (their keyspace, on Cassandra), where their runs live.
    user_store_url: str = ""
    running: dict[int, tuple[subprocess.Popen[str], str]] = field(default_factory=dict)
    log: Callable[[str], None] = field(default=lambda line: None)
    _store: Any = None

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        zk, master, agent = cluster_port(), cluster_port(), cluster_port()
        layout = Layout(zk_port=zk, master_port=master, agent_port=agent,
                        containerizers="process", agent_ping_timeout_s=PING_TIMEOUT_S,
                        max_agent_ping_timeouts=PING_TIMEOUTS,
                        recovery_timeout_s=RECOVERY_TIMEOUT_S)  # fmt: skip
        self.cluster = Cluster(self.folder / "cluster", layout)

    # --- the world -----------------------------------------------------------------
    def start(self) -> FaultWorld:
        self.cluster.start(agents=self.agents, masters=self.masters, cpus=self.cpus,
                           mem_mb=1024, cassandra=self.cassandra)  # fmt: skip
        if self.cassandra:
            self.store_url = str(self.cluster.status()["cassandra"]["url"])
        elif self.store_url is None:
            self.store_url = f"sqlite:///{self.folder / 'ancho.db'}"
        from ..store import open_store
        from ..users import add_user

        admin = open_store(self.store_url)
        try:
            user = add_user(admin, self.user)
        finally:
            admin.close()
        self.token, self.user_store_url = str(user["token"]), str(user["store"])
        for slot in range(self.servers):
            self.start_server(slot)
        self.wait_leader()
        return self

    @property
    def servers_zk(self) -> str:
        """Where the servers elect their leader: the cluster's ZooKeeper, ``/ancho``."""
        return self.cluster.zk_url.rsplit("/", 1)[0] + "/ancho"

    def start_server(self, slot: int) -> None:
        """``ancho server --zk`` on the cluster's master, on a fresh port (in ``slot``)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("ANCHO_SERVER", "ANCHO_TOKEN")}  # fmt: skip
        env.update(ANCHO_STORE=str(self.store_url), ANCHO_UNREACHABLE_GRACE_S=str(self.grace_s))
        ancho = str(Path(sys.executable).parent / "ancho")
        log = self.folder / f"server-{slot}.log"
        proc = subprocess.Popen(
            [ancho, "server", "--master", self.cluster.zk_url, "--zk", self.servers_zk,
             "--bind", "127.0.0.1:0"],
            cwd=self.folder, env=env, stdout=subprocess.PIPE, text=True,
            stderr=log.open("a"), start_new_session=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once bound (or empty: it exited)
        if "listening on" not in line:
            proc.kill()
            raise RuntimeError(f"ancho server did not start: {line!r}\n{log.read_text()[-3000:]}")
        self.running[slot] = (proc, line.split("listening on ", 1)[1].split()[0])

    def role(self, url: str) -> str | None:
        """``leader`` or ``standby`` (its ``/healthz``), None when it does not answer."""
        try:
            return str(Client(url, None).healthz().get("role"))
        except Exception:
            return None

    def leader(self) -> int | None:
        """The slot of the server that leads (None: none does now)."""
        for slot, (proc, url) in self.running.items():
            if proc.poll() is None and self.role(url) == "leader":
                return slot
        return None

    def wait_leader(self, timeout_s: float = 90.0) -> float:
        """Seconds until a server leads."""
        start = time.monotonic()
        while self.leader() is None:
            if time.monotonic() - start > timeout_s:
                raise RuntimeError(f"no ancho server leads after {timeout_s:g} s")
            time.sleep(0.1)
        return time.monotonic() - start

    @property
    def server_url(self) -> str:
        """A live server's URL (any serves every request)."""
        live = [url for proc, url in self.running.values() if proc.poll() is None]
        if not live:
            raise RuntimeError("no ancho server is running")
        return live[0]

    def kill_server(self, slot: int) -> None:
        """SIGKILL a server (its whole process group)."""
        proc, _ = self.running.pop(slot)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        """Stop the servers (SIGTERM), the store connection and the cluster."""
        for slot, (proc, _) in list(self.running.items()):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    self.kill_server(slot)
        self.running.clear()
        if self._store is not None:
            self._store.close()
        self.cluster.stop()

    def store(self) -> Any:
        """The user's store (one connection, kept)."""
        if self._store is None:
            from ..store import open_store

            self._store = open_store(self.user_store_url)
        return self._store

    def client(self) -> Client:
        return Client(self.server_url, self.token)

    def via_server(self, call: Callable[[str], Any], timeout_s: float = 90.0) -> Any:
        """``call(url)`` on a live server, as a client of several does: on another one
        (or, the supervisor having restarted it, the same) when a server goes away."""
        from ..errors import AnchoError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return call(self.server_url)
            except (AnchoError, RuntimeError, subprocess.CalledProcessError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
                self.restart_dead(agents=False)

    # --- runs ------------------------------------------------------------------------
    def submit(self, model: Path, sequences: int, seed: int, **parameters: Any) -> str:
        spec: dict[str, Any] = {"model": {"entrypoint": "model:simulate"},
                                "parameters": parameters, "sequences": sequences, "seed": seed,
                                "resources": {"cpus": 1, "mem_mb": 256}}  # fmt: skip

        def submit(url: str) -> str:
            client = Client(url, self.token)
            spec["model"]["source"] = client.upload_model(model)
            return str(client.submit(spec)["id"])

        return str(self.via_server(submit))

    def stored(self, run_id: str) -> dict[str, Any]:
        """The run as the store has it (readable while the server is away)."""
        record = self.store().get_run(run_id)
        return {"state": record.state, "ok": record.ok, "failed": record.failed,
                "reason": record.reason, "done": record.done}  # fmt: skip

    def wait(self, run_id: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.stored(run_id)
            if run["done"] or time.monotonic() > deadline:
                return run
            time.sleep(0.2)

    def export(self, run_id: str) -> bytes:
        """``ancho results RUN --format jsonl``, through a server."""
        ancho = str(Path(sys.executable).parent / "ancho")
        argv = [ancho, "results", run_id, "--format", "jsonl"]

        def export(url: str) -> bytes:
            env = {**os.environ, "ANCHO_SERVER": url, "ANCHO_TOKEN": self.token}
            return subprocess.run(argv, env=env, cwd=self.folder, capture_output=True,
                                  check=True, timeout=300).stdout  # fmt: skip

        return bytes(self.via_server(export))

    def results_sha256(self, run_id: str) -> str:
        """SHA-256 of ``ancho results RUN --format jsonl``."""
        return hashlib.sha256(self.export(run_id)).hexdigest()

    def summary_outputs(self, run_id: str) -> str:
        """The summary's statistics (JSON, keys sorted), which must not depend on faults."""
        summary = self.via_server(lambda url: Client(url, self.token).summary(run_id))
        return json.dumps(summary["outputs"], sort_keys=True)

    def relaunched(self, run_id: str) -> int:
        """Sequences launched again after a fault (from the scheduler's log): an upper
        bound on the sequences computed twice (some had not run yet)."""
        return sum(self.relaunch_reasons(run_id).values())

    def relaunch_reasons(self, run_id: str) -> dict[str, int]:
        """The sequences launched again, by the state and reason that sent them back."""
        reasons: dict[str, int] = {}
        for event in self.store().iter_events(run_id):
            for first, last, why in _BATCH_LINE.findall(event.message):
                state, _, reason = why.partition(" ")
                key = (f"{state} {reason}" if reason.startswith("REASON_") else state) or "retried"
                reasons[key] = reasons.get(key, 0) + int(last) - int(first) + 1
        return reasons

    def executors(self) -> list[int]:
        """Live processes in the agents' sandboxes (executors and their model processes)."""
        return [pid for agent in self.cluster.of("agent")
                for pid in processes_under(Path(agent.folder) / "slaves")]  # fmt: skip

    # --- faults ----------------------------------------------------------------------
    def inject(self, fault: Fault, run_id: str) -> Injected:
        """Carry out one fault (blocking for its outage when it has one)."""
        at = time.monotonic()
        target = self._inject(fault.kind)
        self.log(f"{time.strftime('%H:%M:%S')} {fault.kind}: {target}")
        return Injected(fault, target, at)

    def _inject(self, kind: str) -> str:
        cluster = self.cluster
        if kind == "executor":
            pids = [p for p in self.executors() if _is_executor(p)]
            if not pids:
                return "no executor running"
            pid = random.choice(pids)
            os.kill(pid, signal.SIGKILL)
            return f"executor pid {pid}"
        if kind in ("agent", "agent-restart", "partition"):
            agent = self._busy_agent()
            if agent is None:
                return "no agent registered"
            if kind == "partition":
                cluster.partition(agent, seconds=OUTAGE_S["partition"])
                return f"agent {agent} partitioned for {OUTAGE_S['partition']:g} s"
            cluster.kill("agent", agent, restart=kind == "agent-restart")
            return f"agent {agent}" + (" restarted" if kind == "agent-restart" else " killed")
        if kind == "master":
            leader = cluster.leader()
            member = cluster.kill("leader")
            time.sleep(OUTAGE_S["master"])
            cluster.kill("master", member.address, restart=True)  # back as a standby
            return f"leading master {leader}"
        if kind == "server-leader":
            slot = self.leader()
            if slot is None or len(self.running) < 2:
                return "no leading server with a standby"
            self.kill_server(slot)
            took = self.wait_leader()
            self.start_server(slot)  # back, as a standby
            return f"leading ancho server (a standby led after {took:.1f} s)"
        if kind == "server":
            slots = sorted(self.running)
            for slot in slots:
                self.kill_server(slot)
            time.sleep(OUTAGE_S["server"])
            for slot in slots:
                self.start_server(slot)
            return f"every ancho server ({len(slots)}; restarted)"
        if kind == "zookeeper":
            cluster.kill("zookeeper")
            time.sleep(OUTAGE_S["zookeeper"])
            cluster.kill("zookeeper", restart=True)
            # Masters and servers whose sessions expired meanwhile exit, as Mesos' do:
            # their supervisor starts them again.
            # Supervise for SUPERVISE_S, and on until a server leads (one whose session
            # expires late exits late).
            restarted: list[str] = []
            until, give_up = time.monotonic() + SUPERVISE_S, time.monotonic() + 90.0
            while time.monotonic() < until or self.leader() is None:
                if time.monotonic() > give_up:
                    raise RuntimeError("no ancho server leads 90 s after ZooKeeper came back")
                restarted += self.restart_dead(agents=False)
                time.sleep(0.5)
            again = f"; restarted {', '.join(restarted)}" if restarted else ""
            return f"zookeeper for {OUTAGE_S['zookeeper']:g} s{again}"
        if kind == "cassandra":
            nodes = cluster.of("cassandra")
            if not nodes:
                return "no Cassandra ring"
            node = random.choice(nodes)
            cluster.kill("cassandra", node.address)
            time.sleep(OUTAGE_S["cassandra"])
            cluster.kill("cassandra", node.address, restart=True)
            return f"cassandra node {node.address} for {OUTAGE_S['cassandra']:g} s"
        raise ValueError(f"unknown fault {kind!r}: one of {', '.join(KINDS)}")

    def _busy_agent(self) -> str | None:
        """An agent that holds an executor (else any registered one)."""
        status = self.cluster.status()["agents"]
        registered = [a for a in status if a.get("registered") and a.get("id")]
        if not registered:
            return None
        busy = [a for a in registered
                if processes_under(Path(self._agent_folder(a["address"])) / "slaves")]  # fmt: skip
        return str(random.choice(busy or registered)["id"])

    def _agent_folder(self, address: str) -> str:
        return next(m.folder for m in self.cluster.of("agent") if m.address == address)

    def restart_dead(self, agents: bool = True) -> list[str]:
        """What a supervisor does: start again the masters and servers that exited, and
        (``agents``) the agents a fault left dead, the machine back after a repair, on
        their work directories. What it restarted."""
        restarted = []
        for member in self.cluster.of("master") + (self.cluster.of("agent") if agents else []):
            if not alive(member.pid):
                self.cluster.kill(member.role, member.address, restart=True)
                restarted.append(f"{member.role} {member.address}")
        for slot, (proc, _) in sorted(self.running.items()):
            if proc.poll() is not None:
                del self.running[slot]
                self.start_server(slot)
                restarted.append(f"server {slot}")
        if restarted and self.cluster.leader() is None:
            deadline = time.monotonic() + 30
            while self.cluster.leader() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        return restarted


def _is_executor(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(part.endswith(b"ancho-executor") for part in cmdline) or b"executor" in cmdline
