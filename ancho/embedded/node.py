"""An embedded master or agent as its own process: ``python -m ancho.embedded.node``.

``ancho cluster`` starts these; each binds its own loopback address.

``master --ip IP --port P --work-dir D [--zk zk://…/mesos] [flags]``
    Serves the scheduler API, ``/master/state`` and ``/master/internal``. With
    ``--zk`` it contends for leadership (:mod:`.election`); until it leads, scheduler
    calls get 307 with ``Location`` naming the leader, or 503 when nobody leads, as a
    Mesos master answers. A master that loses its leadership exits, as Mesos' does.
    Agents not heard from for ``agent_ping_timeout`` times ``max_agent_ping_timeouts``
    are marked unreachable.

``agent --ip IP --port P --work-dir D --master HOST:PORT|zk://…/mesos --cpus C --mem-mb M``
    Serves the executor API and its ``/state``; registers with the leading master
    (found through ZooKeeper) and re-registers with each new one; pings it.

With ``--zk`` the leader keeps the registry (agents, unreachable agents, removed
frameworks) in ZooKeeper at ``<path>-registry``, so that the next leader knows them, as
Mesos' replicated registry does: agents that do not re-register within
``--agent-reregister-timeout`` (10 minutes) are marked unreachable, and removed
frameworks stay removed.

Both print ``ancho node ready <address>`` on stdout once serving, and stop on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .agent import Agent, AgentConfig
from .containerizer import CompositeContainerizer, Containerizer, ProcessContainerizer
from .election import Candidacy, LeaderWatch, ZkUrl
from .http import HttpServer, Request, Response, Route, StreamResponse
from .master import Master, MasterConfig
from .protocol import JSON, MESOS_VERSION
from .remote import AGENT_PATH, MASTER_PATH, AgentEndpoint, HttpMasterLink, MasterEndpoint
from .resources import Resources, parse_ranges

logger = logging.getLogger("ancho.embedded.node")

_TICK_S = 0.1
_AGENT_LOOP_S = 0.5


def _version(_: Request) -> Response:
    body = {"version": MESOS_VERSION, "build_date": "", "build_user": "ancho"}
    return Response(200, json.dumps(body).encode(), "application/json")


def _address_of(info: JSON | None) -> str | None:
    if not info or "address" not in info:
        return None
    address = info["address"]
    return f"{address.get('ip') or address.get('hostname')}:{address['port']}"


class _Ticker:
    """Periodic work under the node's lock, at least every 0.1 s."""

    def __init__(self, lock: threading.RLock, work: Callable[[float], None]) -> None:
        self._lock, self._work = lock, work
        self.wake = threading.Event()
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ancho-node-tick", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.wake.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self.stopped.is_set():
            self.wake.wait(_TICK_S)
            self.wake.clear()
            try:
                with self._lock:
                    self._work(time.time())
            except Exception:
                logger.exception("periodic work failed")


# ------------------------------------------------------------------------ master
class MasterNode:
    """One embedded master process's parts."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.lock = threading.RLock()
        self.ticker = _Ticker(self.lock, self._tick)
        routes: dict[str, Route] = {}
        self.server = HttpServer(args.ip, args.port, routes)
        host, port = self.server.address
        self.master = Master(
            MasterConfig(
                host,
                port,
                heartbeat_interval_s=args.heartbeat_interval,
                default_refuse_s=5.0,
                offer_timeout_s=args.offer_timeout,
            ),
            self.lock,
            self.ticker.wake,
        )
        self.endpoint = MasterEndpoint(self.master)
        self.lost_after_s = args.agent_ping_timeout * args.max_agent_ping_timeouts
        self.reregister_timeout_s = args.agent_reregister_timeout
        # Beside the leader group, not in it: pymesos takes the group's lowest child.
        self.registry_path = f"{ZkUrl.parse(args.zk).path}-registry" if args.zk else ""
        self.leading = args.zk is None
        self.candidacy: Candidacy | None = None
        if args.zk is not None:
            self.candidacy = Candidacy(
                ZkUrl.parse(args.zk), self.master.master_info(), self._elected, self._lost
            )
        routes.update(
            {
                "/version": _version,
                "/health": lambda _: Response(200),
                "/api/v1/scheduler": self._leader_only(self.master.handle),
                "/master/state": self._leader_only(self.master.state_route),
                MASTER_PATH: self._leader_only(self.endpoint),
            }
        )

    def _elected(self) -> None:
        assert self.candidacy is not None
        client, path = self.candidacy.client, self.registry_path
        client.ensure_path(path)
        data, _ = client.get(path)
        registry = json.loads(data) if data else {}
        with self.lock:
            self.master.restore(registry, self.reregister_timeout_s)
            self.master.on_registry_change = lambda r: client.set(path, json.dumps(r).encode())
            self.leading = True
            self.master.elected_time = time.time()
        logger.info(
            "elected the leading master; registry: %d agents, %d removed frameworks",
            len(registry.get("agents", [])),
            len(registry.get("removed_frameworks", [])),
        )

    def _lost(self) -> None:
        # Mesos' master aborts when it loses leadership; a supervisor restarts it.
        logger.error("Lost leadership... committing suicide!")
        os._exit(1)

    def _leader_only(
        self, route: Callable[[Request], Response | StreamResponse]
    ) -> Callable[[Request], Response | StreamResponse]:
        """A standby answers as Mesos' redirect(): 307 to the leader, 503 with none."""

        def gated(request: Request) -> Response | StreamResponse:
            if self.leading:
                return route(request)
            leader = self.candidacy.leader if self.candidacy is not None else None
            if not leader or "port" not in leader:
                return Response(503, b"No leader elected")
            base = f"//{leader.get('hostname') or _address_of(leader)}:{leader['port']}"
            return Response(307, headers={"Location": base + request.target})

        return gated

    def _tick(self, now: float) -> None:
        if not self.leading:
            return
        self.master.tick(now)
        deadline = time.monotonic() - self.lost_after_s
        for agent_id in list(self.master.agents):
            if self.endpoint.last_seen.get(agent_id, time.monotonic()) < deadline:
                self.master.remove_agent(
                    agent_id, "is unreachable (no ping answered)", unreachable=True
                )

    def start(self) -> str:
        self.server.start()
        self.ticker.start()
        if self.candidacy is not None:
            self.candidacy.start()
        host, port = self.server.address
        return f"{host}:{port}"

    def stop(self) -> None:
        if self.candidacy is not None:
            self.candidacy.stop()
        self.ticker.stop()
        with self.lock:
            self.master.stop()
        self.server.stop()


# ------------------------------------------------------------------------- agent
class AgentNode:
    """One embedded agent process's parts."""

    def __init__(self, args: argparse.Namespace, containerizer: Containerizer) -> None:
        self.lock = threading.RLock()
        routes: dict[str, Route] = {}
        self.server = HttpServer(args.ip, args.port, routes)
        host, port = self.server.address
        work_dir = Path(args.work_dir)
        total = Resources(
            {"cpus": float(args.cpus), "mem": float(args.mem_mb), "disk": float(args.disk_mb)},
            {"ports": list(parse_ranges(args.ports))},
        )
        self.agent = Agent(
            AgentConfig(
                host=host,
                port=port,
                work_dir=work_dir,
                total=total,
                heartbeat_interval_s=15.0,
                status_update_retry_s=args.status_update_retry,
                executor_shutdown_grace_s=5.0,
                executor_reregistration_timeout_s=args.executor_reregistration_timeout,
                executor_environment=_environment_flag(args.executor_environment_variables),
                recovery_timeout_s=args.recovery_timeout,
            ),
            containerizer,
            self.lock,
            agent_id=_checkpointed_id(work_dir),
        )
        self.watch: LeaderWatch | None = None
        self._static_master: str | None = None
        if args.master.startswith("zk://"):
            self.watch = LeaderWatch(ZkUrl.parse(args.master))
        else:
            self._static_master = args.master
        self.link = HttpMasterLink(self.agent, self._leader)
        self.ticker = _Ticker(self.lock, self.agent.tick)
        self._stopped = threading.Event()
        self._loop = threading.Thread(target=self._register_loop, name="ancho-agent-register")
        self._loop.daemon = True
        self._work_dir = work_dir
        routes.update(
            {
                "/version": _version,
                "/health": lambda _: Response(200),
                "/api/v1/executor": self.agent.handle,
                "/state": self.agent.state_route,
                "/slave(1)/state": self.agent.state_route,
                AGENT_PATH: AgentEndpoint(self.agent),
            }
        )

    def _leader(self) -> str | None:
        if self.watch is not None:
            return _address_of(self.watch.leader)
        return self._static_master

    def _register_loop(self) -> None:
        while not self._stopped.wait(_AGENT_LOOP_S):
            with self.lock:
                recovering = self.agent.recovering(time.time())
            if recovering:
                continue  # re-register once recovered executors had their chance
            if self.link.registered:
                self.link.ping()
            elif self.link.register():
                _checkpoint_id(self._work_dir, self.agent.agent_id)

    def start(self) -> str:
        self.server.start()
        self.ticker.start()
        if self.watch is not None:
            self.watch.start()
        if self.agent.agent_id:
            with self.lock:
                waiting = self.agent.recover()
            logger.info("recovered; %d executors may re-subscribe", waiting)
        else:
            self.link.register()
        if self.agent.agent_id:
            _checkpoint_id(self._work_dir, self.agent.agent_id)
        self._loop.start()
        host, port = self.server.address
        return f"{host}:{port}"

    def stop(self) -> None:
        self._stopped.set()
        if self.watch is not None:
            self.watch.stop()
        self.ticker.stop()
        with self.lock:
            threads = self.agent.stop()
        for thread in threads:
            thread.join(5)
        self.server.stop()


def _checkpoint_file(work_dir: Path) -> Path:
    # Where a Mesos agent checkpoints its id: meta/slaves/latest.
    return work_dir / "meta" / "slaves" / "latest"


def _checkpointed_id(work_dir: Path) -> str:
    try:
        return _checkpoint_file(work_dir).read_text("utf-8").strip()
    except OSError:
        return ""


def _checkpoint_id(work_dir: Path, agent_id: str) -> None:
    path = _checkpoint_file(work_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(agent_id + "\n", "utf-8")


# -------------------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ancho.embedded.node")
    sub = parser.add_subparsers(dest="role", required=True)
    master = sub.add_parser("master")
    agent = sub.add_parser("agent")
    for role in (master, agent):
        role.add_argument("--ip", required=True)
        role.add_argument("--port", type=int, required=True)
        role.add_argument("--work-dir", required=True)
    master.add_argument("--zk", default=None)
    master.add_argument("--heartbeat-interval", type=float, default=15.0)
    master.add_argument("--offer-timeout", type=float, default=None)
    master.add_argument("--agent-ping-timeout", type=float, default=15.0)
    master.add_argument("--max-agent-ping-timeouts", type=int, default=5)
    master.add_argument("--agent-reregister-timeout", type=float, default=600.0)
    agent.add_argument("--master", required=True)
    agent.add_argument("--cpus", type=float, required=True)
    agent.add_argument("--mem-mb", type=int, required=True)
    agent.add_argument("--disk-mb", type=int, default=10_000)
    agent.add_argument("--ports", default="31000-32000")
    agent.add_argument("--status-update-retry", type=float, default=10.0)
    agent.add_argument("--executor-reregistration-timeout", type=float, default=2.0)
    agent.add_argument("--recovery-timeout", type=float, default=900.0)
    agent.add_argument("--executor-environment-variables", default=None,
                       help="a JSON object of strings: every executor's environment")  # fmt: skip
    agent.add_argument("--containerizers", default="process")
    return parser


def _containerizer(names: str) -> Containerizer:
    parts: list[Containerizer] = []
    for name in names.split(","):
        if name == "process":
            parts.append(ProcessContainerizer())
        elif name == "docker":
            from .docker_containerizer import DockerContainerizer

            parts.append(DockerContainerizer())
        else:
            raise SystemExit(f"--containerizers: unknown containerizer {name!r}")
    return CompositeContainerizer(*parts)


def _environment_flag(value: str | None) -> dict[str, str]:
    """``--executor-environment-variables``: a JSON object whose values are strings."""
    if value is None:
        return {}
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise SystemExit(f"--executor-environment-variables: not JSON ({exc})") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise SystemExit("--executor-environment-variables: expected a JSON object of strings")
    return parsed


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("ANCHO_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {args.role} %(name)s %(levelname)s %(message)s",
    )
    node: MasterNode | AgentNode
    if args.role == "master":
        node = MasterNode(args)
    else:
        node = AgentNode(args, _containerizer(args.containerizers))
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    address = node.start()
    print(f"ancho node ready {address}", flush=True)
    done.wait()
    node.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
