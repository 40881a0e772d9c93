"""Master and agents in different processes: the links of :mod:`.agents` as JSON over HTTP.

Mesos' master and agents talk libprocess messages, HTTP POSTs of protobufs that no
framework sees. Here they are JSON objects ``{"type": …, …}`` POSTed to
``/master/internal`` (agent → master) and ``/slave(1)/internal`` (master → agent),
answered 202 (or 200 with a body for registration). Like libprocess messages they are
sent in order by one sender thread per peer and dropped when the peer cannot be
reached: status updates are retried by the agent's update manager until acknowledged,
and a (re-)registration carries everything else the master must know.

Agent → master: ``REGISTER`` (→ its agent id), ``REREGISTER`` (with its executors and
live tasks, after a master failover or a restart), ``TASK_STATE``, ``UPDATE``,
``EXECUTOR_MESSAGE``, ``EXECUTOR_TERMINATED``, ``PING``. A message naming an agent the
master does not know gets 404, and the agent registers again.

Master → agent: ``LAUNCH``, ``KILL``, ``SHUTDOWN_EXECUTOR``, ``ACKNOWLEDGE``,
``MESSAGE``, ``SHUTDOWN_FRAMEWORK``, ``RESEND_UPDATES``.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .agents import AgentRecord, ExecutorRecord
from .http import Request, Response
from .protocol import JSON, TERMINAL_STATES
from .resources import Resources

if TYPE_CHECKING:
    from .agent import Agent
    from .master import Master

__all__ = ["AgentEndpoint", "HttpAgentLink", "HttpMasterLink", "MasterEndpoint", "post"]

logger = logging.getLogger("ancho.embedded.remote")

MASTER_PATH = "/master/internal"
AGENT_PATH = "/slave(1)/internal"
_TIMEOUT_S = 5.0
_QUEUE_LIMIT = 10_000


def post(
    address: str, path: str, message: JSON, *, source: str | None = None,
    timeout: float = _TIMEOUT_S,
) -> tuple[int, Any]:  # fmt: skip
    """POST one JSON message from the address ``source`` (each node's own, as on a real
    network, so partitions between addresses apply); return (status, decoded body or
    None). Raises OSError."""
    host, _, port = address.rpartition(":")
    bind = (source, 0) if source else None
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout, source_address=bind)
    try:
        body = json.dumps(message).encode()
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        raw = response.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return response.status, decoded
    except http.client.HTTPException as exc:
        raise OSError(f"{address}: {exc}") from None
    finally:
        conn.close()


def _json_response(status: int, body: Any = None) -> Response:
    raw = json.dumps(body).encode() if body is not None else b""
    return Response(status, raw, "application/json")


class _Sender:
    """One peer's outbound messages, in order, on one thread; dropped when unreachable."""

    def __init__(self, name: str, target: Callable[[], str | None], path: str, source: str) -> None:
        self._target = target
        self._path = path
        self._source = source
        self._queue: queue.Queue[JSON | None] = queue.Queue(_QUEUE_LIMIT)
        self.on_status: Callable[[JSON, int], None] | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def send(self, message: JSON) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            logger.warning("dropping %s: the queue to its peer is full", message.get("type"))

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (message := self._queue.get()) is not None:
            address = self._target()
            if address is None:
                continue  # no peer (no leading master): dropped, as libprocess would
            try:
                status, _ = post(address, self._path, message, source=self._source)
            except OSError as exc:
                logger.debug("%s to %s dropped: %s", message.get("type"), address, exc)
                continue
            if self.on_status is not None:
                self.on_status(message, status)


# ------------------------------------------------------------------ master side
class HttpAgentLink:
    """The master's link to an agent process."""

    def __init__(self, agent_id: str, endpoint: str, source: str) -> None:
        self.endpoint = endpoint
        self._sender = _Sender(
            f"ancho-master-to-{agent_id}", lambda: self.endpoint, AGENT_PATH, source
        )

    def close(self) -> None:
        self._sender.close()

    def launch_task(
        self,
        framework_info: JSON,
        executor_info: JSON,
        task_info: JSON,
        task_resources: Resources,
        executor_resources: Resources,
    ) -> None:
        self._sender.send(
            {
                "type": "LAUNCH",
                "framework_info": framework_info,
                "executor_info": executor_info,
                "task_info": task_info,
                "task_resources": task_resources.to_json(),
                "executor_resources": executor_resources.to_json(),
            }
        )

    def kill_task(self, framework_id: str, task_id: str) -> None:
        self._sender.send({"type": "KILL", "framework_id": framework_id, "task_id": task_id})

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None:
        self._sender.send(
            {"type": "SHUTDOWN_EXECUTOR", "framework_id": framework_id, "executor_id": executor_id}
        )

    def acknowledge(self, framework_id: str, task_id: str, uuid: str) -> None:
        self._sender.send(
            {"type": "ACKNOWLEDGE", "framework_id": framework_id, "task_id": task_id, "uuid": uuid}
        )

    def message_to_executor(self, framework_id: str, executor_id: str, data: str) -> None:
        self._sender.send(
            {"type": "MESSAGE", "framework_id": framework_id, "executor_id": executor_id,
             "data": data}
        )  # fmt: skip

    def shutdown_framework(self, framework_id: str) -> None:
        self._sender.send({"type": "SHUTDOWN_FRAMEWORK", "framework_id": framework_id})

    def resend_updates(self, framework_id: str) -> None:
        self._sender.send({"type": "RESEND_UPDATES", "framework_id": framework_id})


class MasterEndpoint:
    """The master's ``/master/internal`` route: what agent processes tell it."""

    def __init__(self, master: Master) -> None:
        self.master = master
        #: When each agent was last heard from (for agent-loss detection).
        self.last_seen: dict[str, float] = {}

    def __call__(self, request: Request) -> Response:
        try:
            message = json.loads(request.body)
            kind = message["type"]
        except (ValueError, KeyError, TypeError):
            return _json_response(400, {"error": "expecting a JSON message with a type"})
        master = self.master
        with master.lock:
            if kind == "REGISTER":
                return self._register(message, reregister=False)
            if kind == "REREGISTER":
                return self._register(message, reregister=True)
            agent_id = message.get("agent_id", "")
            if agent_id not in master.agents:
                return _json_response(404, {"error": f"agent {agent_id} is not registered"})
            self.last_seen[agent_id] = time.monotonic()
            if kind == "TASK_STATE":
                master.task_state_changed(
                    agent_id, message["framework_id"], message["task_id"], message["status"]
                )
            elif kind == "UPDATE":
                master.forward_update(agent_id, message["framework_id"], message["status"])
            elif kind == "EXECUTOR_MESSAGE":
                master.executor_message(
                    agent_id, message["framework_id"], message["executor_id"], message["data"]
                )
            elif kind == "EXECUTOR_TERMINATED":
                master.executor_terminated(
                    agent_id, message["framework_id"], message["executor_id"], message["status"]
                )
            elif kind != "PING":
                return _json_response(400, {"error": f"unknown message type {kind!r}"})
        return _json_response(202)

    def _register(self, message: JSON, *, reregister: bool) -> Response:
        master = self.master
        hostname, port = str(message["hostname"]), int(message["port"])
        endpoint = f"{hostname}:{port}"
        agent_id = str(message.get("agent_id") or "") if reregister else ""
        for known in list(master.agents.values()):
            # An agent restarted with a new id on the same address replaces the old one.
            if known.endpoint == endpoint and known.agent_id != agent_id:
                master.remove_agent(known.agent_id, "re-registered with a new id")
        now = time.time()
        old = master.agents.get(agent_id)
        close = getattr(old.link, "close", None) if old is not None else None
        if close is not None:
            close()
        if not agent_id:
            agent_id = master.new_agent_id()
        record = AgentRecord(
            agent_id,
            hostname,
            port,
            Resources.from_json(message["resources"]),
            HttpAgentLink(agent_id, endpoint, master.config.host),
            registered_time=old.registered_time if old is not None else now,
            reregistered_time=now if reregister else None,
        )
        for item in message.get("executors", []):
            executor = ExecutorRecord(
                item["framework_id"],
                item["executor_id"],
                item["info"],
                Resources.from_json(item["resources"]),
            )
            record.executors[(executor.framework_id, executor.executor_id)] = executor
        dropped: set[str] = set()
        for item in message.get("tasks", []):
            task = master.recovered_task(agent_id, item)
            if task is None:
                dropped.add(item["framework_id"])
            elif task.state not in TERMINAL_STATES:
                # Only live tasks hold the agent's resources; a terminated one stays
                # with its framework until its terminal update is acknowledged.
                record.tasks[(item["framework_id"], task.task_id)] = task
        for framework_id in dropped:
            record.drop_framework(framework_id)
            record.link.shutdown_framework(framework_id)
        if reregister:
            master.agent_reregistered(record, old)
        else:
            master.add_agent(record)
        self.last_seen[agent_id] = time.monotonic()
        return _json_response(200, {"agent_id": agent_id, "master_info": master.master_info()})


# ------------------------------------------------------------------- agent side
class HttpMasterLink:
    """An agent process's link to the leading master, and its (re-)registration.

    ``leader()`` names the current leader's address (None while there is none). Until
    the agent is registered with that leader, what it would tell the master is
    dropped: the re-registration carries its executors and tasks instead.
    """

    def __init__(self, agent: Agent, leader: Callable[[], str | None]) -> None:
        self._agent = agent
        self._leader = leader
        self._registered_with: str | None = None
        self._sender = _Sender(
            "ancho-agent-to-master", self._target, MASTER_PATH, agent.config.host
        )
        self._sender.on_status = self._answered

    def _target(self) -> str | None:
        leader = self._leader()
        return leader if leader is not None and leader == self._registered_with else None

    def _answered(self, message: JSON, status: int) -> None:
        if status == 404:
            logger.warning("the master does not know this agent: registering again")
            self._registered_with = None

    @property
    def registered(self) -> bool:
        return self._registered_with is not None and self._registered_with == self._leader()

    def register(self) -> bool:
        """(Re-)register with the current leader if not registered with it; True if done."""
        leader = self._leader()
        if leader is None:
            return False
        if self._registered_with == leader:
            return True
        agent = self._agent
        with agent.lock:
            message = agent.registration()
        message["type"] = "REREGISTER" if agent.agent_id else "REGISTER"
        try:
            status, body = post(leader, MASTER_PATH, message, source=agent.config.host)
        except OSError as exc:
            logger.debug("registering with %s failed: %s", leader, exc)
            return False
        if status != 200 or not isinstance(body, dict):
            logger.warning("master %s refused the registration: %s %s", leader, status, body)
            return False
        with agent.lock:
            agent.attach(self, str(body["agent_id"]), leader.rpartition(":")[0])
            self._registered_with = leader
            agent.registered()
        logger.info("agent %s registered with master %s", body["agent_id"], leader)
        return True

    def ping(self) -> None:
        self._send({"type": "PING"})

    def _send(self, message: JSON) -> None:
        message["agent_id"] = self._agent.agent_id
        self._sender.send(message)

    # MasterLink
    def task_state_changed(self, framework_id: str, task_id: str, status: JSON) -> None:
        self._send(
            {"type": "TASK_STATE", "framework_id": framework_id, "task_id": task_id,
             "status": status}
        )  # fmt: skip

    def forward_update(self, framework_id: str, status: JSON) -> None:
        self._send({"type": "UPDATE", "framework_id": framework_id, "status": status})

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None:
        self._send(
            {"type": "EXECUTOR_MESSAGE", "framework_id": framework_id,
             "executor_id": executor_id, "data": data}
        )  # fmt: skip

    def executor_terminated(self, framework_id: str, executor_id: str, status: int) -> None:
        self._send(
            {"type": "EXECUTOR_TERMINATED", "framework_id": framework_id,
             "executor_id": executor_id, "status": status}
        )  # fmt: skip


class AgentEndpoint:
    """The agent's ``/slave(1)/internal`` route: what the master tells it."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def __call__(self, request: Request) -> Response:
        try:
            m = json.loads(request.body)
            kind = m["type"]
        except (ValueError, KeyError, TypeError):
            return _json_response(400, {"error": "expecting a JSON message with a type"})
        agent = self.agent
        with agent.lock:
            if kind == "LAUNCH":
                agent.launch_task(
                    m["framework_info"], m["executor_info"], m["task_info"],
                    Resources.from_json(m["task_resources"]),
                    Resources.from_json(m["executor_resources"]),
                )  # fmt: skip
            elif kind == "KILL":
                agent.kill_task(m["framework_id"], m["task_id"])
            elif kind == "SHUTDOWN_EXECUTOR":
                agent.shutdown_executor(m["framework_id"], m["executor_id"])
            elif kind == "ACKNOWLEDGE":
                agent.acknowledge(m["framework_id"], m["task_id"], m["uuid"])
            elif kind == "MESSAGE":
                agent.message_to_executor(m["framework_id"], m["executor_id"], m["data"])
            elif kind == "SHUTDOWN_FRAMEWORK":
                agent.shutdown_framework(m["framework_id"])
            elif kind == "RESEND_UPDATES":
                agent.updates.resend(m["framework_id"], time.time())
            else:
                return _json_response(400, {"error": f"unknown message type {kind!r}"})
        return _json_response(202)
