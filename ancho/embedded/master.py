"""The master half: scheduler API, frameworks, offers, task state and reconciliation.

All state is guarded by the cluster lock (shared with the agent); HTTP routes take
it, the cluster's ticker thread takes it for periodic work. Events to schedulers are
queued on their :class:`EventStream`, never written under the lock.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .http import EventStream, Request, Response, StreamResponse
from .protocol import (
    JSON,
    MESOS_VERSION,
    TERMINAL_STATES,
    CallError,
    body_of,
    event,
    id_value,
    parse_call,
    task_status,
    validate_id,
)
from .resources import Resources

if TYPE_CHECKING:
    from .agent import Agent

__all__ = ["Master", "MasterConfig"]

logger = logging.getLogger("ancho.embedded.master")

# Mesos' minimum allocatable amounts (master/constants.hpp): smaller leftovers are not
# worth an offer.
_MIN_CPUS = 0.01
_MIN_MEM_MB = 32.0


@dataclass(slots=True, frozen=True)
class MasterConfig:
    """Tunables of the master."""

    host: str
    port: int
    heartbeat_interval_s: float
    default_refuse_s: float


@dataclass(slots=True)
class _Filter:
    resources: Resources
    expires: float


@dataclass(slots=True)
class _Offer:
    offer_id: str
    framework_id: str
    resources: Resources


@dataclass(slots=True)
class _Task:
    task_id: str
    executor_id: str | None
    state: str


@dataclass(slots=True)
class _Framework:
    framework_id: str
    info: JSON
    stream: EventStream | None = None
    failover_deadline: float | None = None
    suppressed: bool = False
    filters: list[_Filter] = field(default_factory=list)
    tasks: dict[str, _Task] = field(default_factory=dict)
    offers: set[str] = field(default_factory=set)
    next_heartbeat: float = 0.0

    @property
    def partition_aware(self) -> bool:
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities", []))

    def send(self, message: JSON) -> None:
        if self.stream is not None:
            self.stream.send(message)


class Master:
    """Scheduler-facing half of the embedded cluster."""

    def __init__(self, config: MasterConfig, lock: threading.RLock, wake: threading.Event):
        self.config = config
        self.lock = lock
        self.wake = wake
        self.master_id = str(uuid.uuid4())
        self.agent: Agent | None = None
        self._frameworks: dict[str, _Framework] = {}
        self._completed: set[str] = set()
        self._offers: dict[str, _Offer] = {}
        self._next_framework = 0
        self._next_offer = 0

    # ----------------------------------------------------------------- identity
    def master_info(self) -> JSON:
        """MasterInfo as sent in SUBSCRIBED."""
        host, port = self.config.host, self.config.port
        try:
            # MasterInfo.ip is the IPv4 address as a uint32 in network byte order.
            ip = struct.unpack("=I", socket.inet_aton(host))[0]
        except OSError:
            ip = 0
        return {
            "id": self.master_id,
            "ip": ip,
            "port": port,
            "pid": f"master@{host}:{port}",
            "hostname": host,
            "version": MESOS_VERSION,
            "address": {"hostname": host, "ip": host, "port": port},
        }

    def _agent(self) -> Agent:
        assert self.agent is not None, "agent not attached"
        return self.agent

    # --------------------------------------------------------------------- HTTP
    def handle(self, request: Request) -> Response | StreamResponse:
        """Route for ``/api/v1/scheduler``."""
        try:
            call = parse_call(request)
            if call["type"] == "SUBSCRIBE":
                return self._subscribe(call, request)
            with self.lock:
                framework = self._caller(call, request)
                handler = getattr(self, "_call_" + call["type"].lower(), None)
                if handler is None:
                    raise CallError(400, f"Unsupported call type {call['type']!r}")
                handler(framework, call)
            return Response(202)
        except CallError as exc:
            return exc.response()

    def _caller(self, call: JSON, request: Request) -> _Framework:
        framework_id = id_value(call, "framework_id")
        framework = self._frameworks.get(framework_id or "")
        if framework is None:
            raise CallError(403, "Framework cannot be found")
        if framework.stream is None:
            raise CallError(403, "Framework is not subscribed")
        stream_id = request.headers.get("Mesos-Stream-Id")
        if not stream_id:
            raise CallError(
                400, "All non-subscribe calls should include the 'Mesos-Stream-Id' header"
            )
        if stream_id != framework.stream.stream_id:
            raise CallError(
                400,
                f"The stream ID '{stream_id}' included in this request didn't match the"
                f" stream ID currently associated with framework ID {framework_id}",
            )
        return framework

    # ---------------------------------------------------------------- SUBSCRIBE
    def _subscribe(self, call: JSON, request: Request) -> StreamResponse:
        if request.headers.get("Mesos-Stream-Id"):
            raise CallError(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        subscribe = body_of(call, "subscribe")
        info = subscribe.get("framework_info")
        if not isinstance(info, dict):
            raise CallError(400, "Expecting 'subscribe.framework_info' to be present")
        if not isinstance(info.get("user"), str) or not isinstance(info.get("name"), str):
            raise CallError(400, "FrameworkInfo requires 'user' and 'name'")
        framework_id = id_value(call, "framework_id", required=False)
        info_id = id_value(info, "id", required=False)
        if info_id is not None and framework_id is None:
            raise CallError(400, "'framework_id' must be set when 'framework_info.id' is set")
        if info_id is not None and info_id != framework_id:
            raise CallError(400, "'framework_id' differs from 'subscribe.framework_info.id'")
        stream = EventStream(str(uuid.uuid4()), on_close=self._stream_closed)
        response = StreamResponse(stream, headers={"Mesos-Stream-Id": stream.stream_id})
        if "application/recordio" in (request.headers.get("Accept") or ""):
            response.content_type = "application/recordio"
            response.headers["Message-Content-Type"] = "application/json"
        now = time.time()
        with self.lock:
            if framework_id is not None and framework_id in self._completed:
                stream.send(event("ERROR", {"message": "Framework has been removed"}))
                stream.close()
                return response
            if framework_id is None:
                framework_id = f"{self.master_id}-{self._next_framework:04d}"
                self._next_framework += 1
            framework = self._frameworks.get(framework_id)
            if framework is None:
                # An unknown id is accepted, as a Mesos master does after its own
                # failover: the framework is trusted to own it.
                framework = _Framework(framework_id, info)
                self._frameworks[framework_id] = framework
                logger.info("framework %s (%s) subscribed", framework_id, info["name"])
            else:
                self._failover(framework)
            framework.info = dict(info, id={"value": framework_id})
            framework.stream = stream
            framework.failover_deadline = None
            framework.suppressed = bool(subscribe.get("suppressed_roles"))
            framework.filters.clear()
            framework.next_heartbeat = now + self.config.heartbeat_interval_s
            stream.send(
                event(
                    "SUBSCRIBED",
                    {
                        "framework_id": {"value": framework_id},
                        "heartbeat_interval_seconds": self.config.heartbeat_interval_s,
                        "master_info": self.master_info(),
                    },
                )
            )
            self._agent().updates.resend(framework_id, now)
        self.wake.set()
        return response

    def _failover(self, framework: _Framework) -> None:
        old = framework.stream
        framework.stream = None
        if old is not None:
            old.send(event("ERROR", {"message": "Framework failed over"}))
            old.close()
        self._remove_offers(framework)
        logger.info("framework %s re-subscribed", framework.framework_id)

    def _stream_closed(self, stream: EventStream) -> None:
        with self.lock:
            for framework in self._frameworks.values():
                if framework.stream is stream:
                    break
            else:
                return
            framework.stream = None
            timeout = float(framework.info.get("failover_timeout", 0.0))
            framework.failover_deadline = time.time() + timeout
            self._remove_offers(framework)
            logger.info(
                "framework %s disconnected; failover timeout %.1fs",
                framework.framework_id,
                timeout,
            )
        self.wake.set()

    # -------------------------------------------------------------------- calls
    def _call_teardown(self, framework: _Framework, call: JSON) -> None:
        self._remove_framework(framework, "teardown")

    def _call_decline(self, framework: _Framework, call: JSON) -> None:
        body = body_of(call, "decline")
        declined = Resources()
        for offer_id in body.get("offer_ids", []):
            offer = self._offers.get(offer_id.get("value", ""))
            if offer is not None and offer.framework_id == framework.framework_id:
                declined = declined + offer.resources
                self._remove_offer(offer)
        self._add_filter(framework, declined, body.get("filters"))
        self.wake.set()

    def _call_revive(self, framework: _Framework, call: JSON) -> None:
        framework.filters.clear()
        framework.suppressed = False
        self.wake.set()

    def _call_suppress(self, framework: _Framework, call: JSON) -> None:
        framework.suppressed = True

    def _call_accept(self, framework: _Framework, call: JSON) -> None:
        body = body_of(call, "accept")
        if not isinstance(body.get("offer_ids"), list):
            raise CallError(400, "Expecting 'accept.offer_ids' to be present")
        operations = body.get("operations", [])
        if not isinstance(operations, list):
            raise CallError(400, "Expecting 'accept.operations' to be a list")
        launches: list[JSON] = []
        for operation in operations:
            if isinstance(operation, dict) and operation.get("type") == "LAUNCH":
                tasks = (operation.get("launch") or {}).get("task_infos", [])
                for task in tasks:
                    self._check_task_shape(task)
                    launches.append(task)
            else:
                kind = operation.get("type") if isinstance(operation, dict) else operation
                logger.warning("ignoring unsupported offer operation %s", kind)
        # Offer validation first: one bad offer invalidates the whole call.
        pool = Resources()
        problem: str | None = None
        offers: list[_Offer] = []
        seen: set[str] = set()
        for offer_id in body["offer_ids"]:
            value = offer_id.get("value", "") if isinstance(offer_id, dict) else ""
            offer = self._offers.get(value)
            if value in seen:
                problem = f"Offer {value} appears more than once"
            elif offer is None or offer.framework_id != framework.framework_id:
                problem = f"Offer {value} is no longer valid"
            else:
                offers.append(offer)
            seen.add(value)
        if not body["offer_ids"]:
            problem = "No offers specified"
        for offer in offers:
            pool = pool + offer.resources
            self._remove_offer(offer)
        if problem is not None:
            state = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
            for task in launches:
                framework.send(
                    self._master_update(
                        task["task_id"]["value"],
                        state,
                        reason="REASON_INVALID_OFFERS",
                        message=f"Task launched with invalid offers: {problem}",
                    )
                )
            self.wake.set()
            return
        for task in launches:
            pool = self._launch(framework, task, pool)
        self._add_filter(framework, pool, body.get("filters"), only_if_given=True)
        self.wake.set()

    def _check_task_shape(self, task: Any) -> None:
        # Missing required protobuf fields fail JSON→protobuf parsing in Mesos: the
        # whole call is a 400, not a per-task TASK_ERROR.
        if not isinstance(task, dict) or not isinstance(task.get("name"), str):
            raise CallError(400, "TaskInfo requires 'name'")
        id_value(task, "task_id")
        id_value(task, "agent_id")

    def _launch(self, framework: _Framework, task: JSON, pool: Resources) -> Resources:
        task_id = task["task_id"]["value"]
        agent = self._agent()
        error, task_resources, executor_resources = self._validate_task(framework, task, pool)
        if error is not None:
            framework.send(
                self._master_update(
                    task_id, "TASK_ERROR", reason="REASON_TASK_INVALID", message=error
                )
            )
            return pool
        executor = task["executor"]
        executor_id = executor["executor_id"]["value"]
        framework.tasks[task_id] = _Task(task_id, executor_id, "TASK_STAGING")
        agent.launch_task(framework.info, executor, task, task_resources, executor_resources)
        return pool - task_resources - executor_resources

    def _validate_task(
        self, framework: _Framework, task: JSON, pool: Resources
    ) -> tuple[str | None, Resources, Resources]:
        """Mesos' task validation (master/validation.cpp), the parts that apply here."""
        empty = Resources()
        task_id = task["task_id"]["value"]
        agent = self._agent()
        if (message := validate_id(task_id)) is not None:
            return f"Task ID '{task_id}' is invalid: {message}", empty, empty
        if task_id in framework.tasks:
            return f"Task has duplicate ID: {task_id}", empty, empty
        if task["agent_id"]["value"] != agent.agent_id:
            return f"Task uses invalid agent: {task['agent_id']['value']}", empty, empty
        executor = task.get("executor")
        if executor is not None and "command" in task:
            return "TaskInfo must not have both 'command' and 'executor'", empty, empty
        if executor is None:
            if "command" in task:
                return (
                    "Command tasks (TaskInfo.command without an executor) are not supported"
                    " by the embedded cluster: give the task an ExecutorInfo",
                    empty,
                    empty,
                )
            return "Task should have one of CommandInfo or ExecutorInfo present", empty, empty
        if not isinstance(executor, dict):
            return "Invalid ExecutorInfo", empty, empty
        try:
            executor_id = id_value(executor, "executor_id")
        except CallError:
            return "ExecutorInfo requires 'executor_id'", empty, empty
        assert executor_id is not None
        if (message := validate_id(executor_id)) is not None:
            return f"Executor ID '{executor_id}' is invalid: {message}", empty, empty
        if not isinstance(executor.get("command"), dict):
            return "ExecutorInfo requires 'command'", empty, empty
        executor_fw = id_value(executor, "framework_id", required=False)
        if executor_fw is not None and executor_fw != framework.framework_id:
            return "ExecutorInfo has an invalid FrameworkID", empty, empty
        try:
            task_resources = Resources.from_json(task.get("resources", []))
            executor_resources = Resources.from_json(executor.get("resources", []))
        except ValueError as exc:
            return f"Task uses invalid resources: {exc}", empty, empty
        if task_resources.is_empty():
            return "Task uses no resources", empty, empty
        existing = agent.executor_info(framework.framework_id, executor_id)
        if existing is not None:
            candidate = dict(executor, framework_id={"value": framework.framework_id})
            if candidate != existing:
                return (
                    f"ExecutorInfo is not compatible with the ExecutorInfo of running"
                    f" executor '{executor_id}'",
                    empty,
                    empty,
                )
            executor_resources = Resources()
        needed = task_resources + executor_resources
        if not pool.contains(needed):
            return (
                "Task uses more resources than available in the offers: needs"
                f" {needed.to_json()}, has {pool.to_json()}",
                empty,
                empty,
            )
        return None, task_resources, executor_resources

    def _call_kill(self, framework: _Framework, call: JSON) -> None:
        task_id = id_value(body_of(call, "kill"), "task_id")
        assert task_id is not None
        task = framework.tasks.get(task_id)
        if task is None:
            # Mesos answers a kill of an unknown task with explicit reconciliation.
            framework.send(self._reconcile_unknown(framework, task_id, None))
            return
        if task.state in TERMINAL_STATES:
            return
        self._agent().kill_task(framework.framework_id, task_id)

    def _call_shutdown(self, framework: _Framework, call: JSON) -> None:
        executor_id = id_value(body_of(call, "shutdown"), "executor_id")
        assert executor_id is not None
        self._agent().shutdown_executor(framework.framework_id, executor_id)

    def _call_acknowledge(self, framework: _Framework, call: JSON) -> None:
        body = body_of(call, "acknowledge")
        task_id = id_value(body, "task_id")
        id_value(body, "agent_id")
        if not isinstance(body.get("uuid"), str):
            raise CallError(400, "Expecting 'acknowledge.uuid' to be present")
        assert task_id is not None
        acked = self._agent().acknowledge(framework.framework_id, task_id, body["uuid"])
        if acked is not None and acked["state"] in TERMINAL_STATES:
            # The master forgets a task once its terminal update is acknowledged.
            framework.tasks.pop(task_id, None)

    def _call_reconcile(self, framework: _Framework, call: JSON) -> None:
        wanted = body_of(call, "reconcile", required=False).get("tasks", [])
        if not wanted:
            for task in framework.tasks.values():
                framework.send(self._reconcile_known(task))
            return
        for item in wanted:
            task_id = id_value(item, "task_id")
            assert task_id is not None
            known = framework.tasks.get(task_id)
            if known is not None:
                framework.send(self._reconcile_known(known))
            else:
                agent_id = id_value(item, "agent_id", required=False)
                framework.send(self._reconcile_unknown(framework, task_id, agent_id))

    def _call_message(self, framework: _Framework, call: JSON) -> None:
        body = body_of(call, "message")
        executor_id = id_value(body, "executor_id")
        id_value(body, "agent_id")
        if not isinstance(body.get("data"), str):
            raise CallError(400, "Expecting 'message.data' to be present")
        assert executor_id is not None
        self._agent().message_to_executor(framework.framework_id, executor_id, body["data"])

    def _call_update_framework(self, framework: _Framework, call: JSON) -> None:
        info = body_of(call, "update_framework").get("framework_info")
        if not isinstance(info, dict):
            raise CallError(400, "Expecting 'update_framework.framework_info'")
        framework.info = dict(info, id={"value": framework.framework_id})

    def _call_request(self, framework: _Framework, call: JSON) -> None:
        """REQUEST is a no-op in Mesos' allocator too."""

    def _call_reconcile_operations(self, framework: _Framework, call: JSON) -> None:
        """No offer operations other than LAUNCH exist here: nothing to reconcile."""

    def _call_accept_inverse_offers(self, framework: _Framework, call: JSON) -> None:
        """No maintenance schedules, hence no inverse offers."""

    _call_decline_inverse_offers = _call_accept_inverse_offers
    _call_acknowledge_operation_status = _call_reconcile_operations

    # ------------------------------------------------------- status and events
    def _master_update(self, task_id: str, state: str, *, reason: str, message: str) -> JSON:
        status = task_status(
            task_id,
            state,
            source="SOURCE_MASTER",
            agent_id=self._agent().agent_id,
            reason=reason,
            message=message,
        )
        return event("UPDATE", {"status": status})

    def _reconcile_known(self, task: _Task) -> JSON:
        status = task_status(
            task.task_id,
            task.state,
            source="SOURCE_MASTER",
            agent_id=self._agent().agent_id,
            executor_id=task.executor_id,
            reason="REASON_RECONCILIATION",
            message="Reconciliation: Latest task state",
        )
        return event("UPDATE", {"status": status})

    def _reconcile_unknown(self, framework: _Framework, task_id: str, agent_id: str | None) -> JSON:
        # Classic frameworks get TASK_LOST; partition-aware ones TASK_GONE (agent known)
        # or TASK_UNKNOWN (agent not given or unknown), as in Mesos 1.11.
        if agent_id == self._agent().agent_id:
            state = "TASK_GONE" if framework.partition_aware else "TASK_LOST"
            message = "Reconciliation: Task is unknown to the agent"
        else:
            state = "TASK_UNKNOWN" if framework.partition_aware else "TASK_LOST"
            message = "Reconciliation: Task is unknown"
        status = task_status(
            task_id,
            state,
            source="SOURCE_MASTER",
            agent_id=agent_id,
            reason="REASON_RECONCILIATION",
            message=message,
        )
        return event("UPDATE", {"status": status})

    def forward_update(self, framework_id: str, status: JSON) -> None:
        """Deliver an agent update to a scheduler (dropped while it is disconnected)."""
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            framework.send(event("UPDATE", {"status": status}))

    def task_state_changed(self, framework_id: str, task_id: str, state: str) -> None:
        """The agent learnt a task's new latest state."""
        framework = self._frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        if task is not None:
            task.state = state
            if state in TERMINAL_STATES:
                self.wake.set()

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None:
        """An executor's framework message, best effort as in Mesos."""
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            body = {
                "agent_id": {"value": self._agent().agent_id},
                "executor_id": {"value": executor_id},
                "data": data,
            }
            framework.send(event("MESSAGE", body))

    def executor_terminated(self, framework_id: str, executor_id: str, status: int) -> None:
        """Tell the scheduler an executor is gone (FAILURE event)."""
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            body = {
                "agent_id": {"value": self._agent().agent_id},
                "executor_id": {"value": executor_id},
                "status": status,
            }
            framework.send(event("FAILURE", body))
        self.wake.set()

    # ---------------------------------------------------- offers and frameworks
    def _add_filter(
        self, framework: _Framework, refused: Resources, filters: Any, only_if_given: bool = False
    ) -> None:
        if only_if_given and not isinstance(filters, dict):
            return
        seconds = self.config.default_refuse_s
        if isinstance(filters, dict) and isinstance(filters.get("refuse_seconds"), int | float):
            seconds = float(filters["refuse_seconds"])
        if seconds > 0 and not refused.is_empty():
            framework.filters.append(_Filter(refused, time.time() + seconds))

    def _remove_offer(self, offer: _Offer) -> None:
        self._offers.pop(offer.offer_id, None)
        framework = self._frameworks.get(offer.framework_id)
        if framework is not None:
            framework.offers.discard(offer.offer_id)

    def _remove_offers(self, framework: _Framework) -> None:
        for offer_id in list(framework.offers):
            offer = self._offers.get(offer_id)
            if offer is not None:
                self._remove_offer(offer)
        framework.offers.clear()

    def _remove_framework(self, framework: _Framework, why: str) -> None:
        logger.info("removing framework %s (%s)", framework.framework_id, why)
        self._remove_offers(framework)
        self._agent().shutdown_framework(framework.framework_id)
        framework.tasks.clear()
        if framework.stream is not None:
            framework.stream.close()
            framework.stream = None
        del self._frameworks[framework.framework_id]
        self._completed.add(framework.framework_id)
        self.wake.set()

    def _allocate(self, now: float) -> None:
        agent = self._agent()
        offered = Resources()
        for offer in self._offers.values():
            offered = offered + offer.resources
        available = agent.total - agent.used_resources() - offered
        if available.scalar("cpus") < _MIN_CPUS and available.scalar("mem") < _MIN_MEM_MB:
            return
        candidates: list[tuple[float, str, _Framework]] = []
        for framework in self._frameworks.values():
            framework.filters = [f for f in framework.filters if f.expires > now]
            if framework.stream is None or framework.suppressed:
                continue
            if any(f.resources.contains(available) for f in framework.filters):
                continue
            share = agent.framework_cpus(framework.framework_id)
            candidates.append((share, framework.framework_id, framework))
        if not candidates:
            return
        # Dominant-resource fairness reduced to cpus on one agent: least used first.
        framework = min(candidates, key=lambda c: (c[0], c[1]))[2]
        offer_id = f"{self.master_id}-O{self._next_offer}"
        self._next_offer += 1
        self._offers[offer_id] = _Offer(offer_id, framework.framework_id, available)
        framework.offers.add(offer_id)
        host, port = self.config.host, self.config.port
        framework.send(
            event(
                "OFFERS",
                {
                    "offers": [
                        {
                            "id": {"value": offer_id},
                            "framework_id": {"value": framework.framework_id},
                            "agent_id": {"value": agent.agent_id},
                            "hostname": host,
                            "url": {
                                "scheme": "http",
                                "address": {"hostname": host, "ip": host, "port": port},
                                "path": "/slave(1)",
                            },
                            "resources": available.to_json(),
                            "executor_ids": [
                                {"value": e} for e in agent.executor_ids(framework.framework_id)
                            ],
                        }
                    ]
                },
            )
        )

    def tick(self, now: float) -> None:
        """Periodic work: failover timeouts, heartbeats, allocation."""
        for framework in list(self._frameworks.values()):
            deadline = framework.failover_deadline
            if framework.stream is None and deadline is not None and deadline <= now:
                self._remove_framework(framework, "failover timeout elapsed")
        for framework in self._frameworks.values():
            if framework.stream is not None and framework.next_heartbeat <= now:
                framework.send(event("HEARTBEAT"))
                framework.next_heartbeat = now + self.config.heartbeat_interval_s
        self._allocate(now)

    def stop(self) -> None:
        """Close every scheduler stream."""
        for framework in self._frameworks.values():
            if framework.stream is not None:
                framework.stream.close()
