"""EmbeddedCluster: master + agent + HTTP server + ticker, started and stopped as one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from types import TracebackType

from .agent import Agent, AgentConfig
from .agents import AgentRecord, LocalAgentLink, LocalMasterLink
from .containerizer import CompositeContainerizer, Containerizer, ProcessContainerizer
from .http import HttpServer, Request, Response, Route, StreamResponse
from .master import Master, MasterConfig
from .protocol import MESOS_VERSION
from .resources import Resources, parse_ranges

__all__ = ["EmbeddedCluster"]

logger = logging.getLogger("ancho.embedded.cluster")

# Periodic work (allocation, retries, timeouts) runs at least this often; events that
# free resources wake the ticker at once.
_TICK_S = 0.1
_JOIN_TIMEOUT_S = 10.0


def available_mem_mb() -> int:
    """The machine's memory less 1 GiB for the system, as a Mesos agent offers it."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    total = int(line.split()[1]) // 1024
                    # Leave 1 GiB to the system, as Mesos' agent does by default.
                    return max(256, total - 1024)
    except OSError:
        pass
    return 1024


class EmbeddedCluster:
    """A single-node Mesos-compatible master and agent, in-process, on loopback.

    ``start()`` returns the master address for ``pymesos.MesosSchedulerDriver``;
    executors are started as processes that reach the agent at ``agent_endpoint``.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        cpus: float | None = None,
        mem_mb: int | None = None,
        disk_mb: int | None = None,
        gpus: int = 0,
        ports: str = "31000-32000",
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_s: float = 15.0,
        status_update_retry_s: float = 10.0,
        default_refuse_s: float = 5.0,
        executor_shutdown_grace_s: float = 5.0,
        executor_registration_timeout_s: float = 60.0,
        executor_heartbeat_interval_s: float = 1800.0,
        offer_timeout_s: float | None = None,
        credentials: dict[str, str] | None = None,
        containerizers: tuple[Containerizer, ...] | None = None,
    ) -> None:
        self.work_dir = Path(work_dir)
        self._cpus = float(cpus if cpus is not None else (os.cpu_count() or 1))
        self._mem_mb = mem_mb
        self._disk_mb = disk_mb
        self._gpus = gpus
        self._ports = parse_ranges(ports)
        self._host = host
        self._port = port
        self._heartbeat_interval_s = heartbeat_interval_s
        self._status_update_retry_s = status_update_retry_s
        self._default_refuse_s = default_refuse_s
        self._grace_s = executor_shutdown_grace_s
        self._registration_timeout_s = executor_registration_timeout_s
        self._executor_heartbeat_s = executor_heartbeat_interval_s
        self._offer_timeout_s = offer_timeout_s
        self._credentials = dict(credentials) if credentials is not None else None
        self._containerizer = CompositeContainerizer(*(containerizers or (ProcessContainerizer(),)))
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._server: HttpServer | None = None
        self._ticker: threading.Thread | None = None
        self._master: Master | None = None
        self._agent: Agent | None = None
        self._address: str | None = None

    # --------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Start serving; return the master address ``host:port``."""
        if self._address is not None:
            return self._address
        self.work_dir.mkdir(parents=True, exist_ok=True)
        routes: dict[str, Route] = {}
        server = HttpServer(self._host, self._port, routes)
        host, port = self._host, server.address[1]
        master = Master(
            MasterConfig(
                host,
                port,
                self._heartbeat_interval_s,
                self._default_refuse_s,
                offer_timeout_s=self._offer_timeout_s,
                credentials=self._credentials,
            ),
            self._lock,
            self._wake,
        )
        agent = Agent(
            AgentConfig(
                host=host,
                port=port,
                work_dir=self.work_dir,
                total=self._total_resources(),
                heartbeat_interval_s=self._heartbeat_interval_s,
                status_update_retry_s=self._status_update_retry_s,
                executor_shutdown_grace_s=self._grace_s,
                executor_registration_timeout_s=self._registration_timeout_s,
                executor_heartbeat_interval_s=self._executor_heartbeat_s,
            ),
            self._containerizer,
            self._lock,
        )
        # One node: the agent registers with its master by direct calls.
        agent_id = master.new_agent_id()
        agent.attach(LocalMasterLink(master, agent_id), agent_id, host)
        master.add_agent(AgentRecord(agent_id, host, port, agent.total, LocalAgentLink(agent)))
        routes.update(
            {
                "/version": self._version,
                "/health": lambda _: Response(200),
                "/api/v1/scheduler": master.handle,
                "/api/v1/executor": agent.handle,
                # Master and agent share this port: /state answers as the agent does.
                "/master/state": master.state_route,
                "/slave(1)/state": agent.state_route,
                "/state": agent.state_route,
            }
        )
        self._master, self._agent, self._server = master, agent, server
        self._stopped.clear()
        server.start()
        self._ticker = threading.Thread(target=self._tick_loop, name="ancho-embedded-tick")
        self._ticker.daemon = True
        self._ticker.start()
        self._address = f"{host}:{port}"
        logger.info(
            "embedded Mesos %s at %s, agent %s with %s",
            MESOS_VERSION,
            self._address,
            agent.agent_id,
            agent.total.to_json(),
        )
        return self._address

    def stop(self) -> None:
        """Kill every executor, close every stream and socket, join every thread."""
        if self._address is None or self._stopped.is_set():
            return
        self._stopped.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.join(_JOIN_TIMEOUT_S)
        assert self._master is not None and self._agent is not None and self._server is not None
        with self._lock:
            threads = self._agent.stop()
            self._master.stop()
        for thread in threads:
            thread.join(_JOIN_TIMEOUT_S)
        self._server.stop(_JOIN_TIMEOUT_S)
        self._address = None
        logger.info("embedded cluster stopped")

    def __enter__(self) -> EmbeddedCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- accessors
    @property
    def address(self) -> str:
        """The master address (``host:port``); the cluster must be started."""
        if self._address is None:
            raise RuntimeError("the embedded cluster is not started")
        return self._address

    @property
    def agent_endpoint(self) -> str:
        """``host:port`` of the agent's executor API (the master's server here)."""
        if self._agent is None or self._address is None:
            raise RuntimeError("the embedded cluster is not started")
        return self._agent.endpoint

    @property
    def agent_id(self) -> str:
        """The agent's id (as in offers and status updates)."""
        if self._agent is None:
            raise RuntimeError("the embedded cluster is not started")
        return self._agent.agent_id

    @property
    def resources(self) -> Resources:
        """The agent's total resources."""
        if self._agent is None:
            return self._total_resources()
        return self._agent.total

    # ----------------------------------------------------------------- helpers
    def _total_resources(self) -> Resources:
        mem = self._mem_mb if self._mem_mb is not None else available_mem_mb()
        if self._disk_mb is not None:
            disk = self._disk_mb
        else:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            disk = shutil.disk_usage(self.work_dir).free // (1024 * 1024)
        scalars = {"cpus": round(self._cpus, 3), "mem": float(mem), "disk": float(disk)}
        if self._gpus:
            scalars["gpus"] = float(self._gpus)
        return Resources(scalars, {"ports": list(self._ports)} if self._ports else {})

    def _version(self, request: Request) -> Response | StreamResponse:
        body = {"version": MESOS_VERSION, "build_date": "", "build_user": "ancho"}
        return Response(200, json.dumps(body).encode(), "application/json")

    def _tick_loop(self) -> None:
        assert self._master is not None and self._agent is not None
        while not self._stopped.is_set():
            self._wake.wait(_TICK_S)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                with self._lock:
                    now = time.time()
                    self._agent.tick(now)
                    self._master.tick(now)
            except Exception:
                logger.exception("embedded cluster tick failed")
