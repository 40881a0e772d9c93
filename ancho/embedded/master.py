"""The master half: scheduler API, framework lifecycle, launches and task state.

Offers live in :mod:`.allocator`, task validation in :mod:`.validation`, the
per-framework records in :mod:`.frameworks`, the master's account of each agent in
:mod:`.agents` and reconciliation answers in :mod:`.reconciliation`; this module
routes scheduler calls to them and, through each agent's link, to the agents.

All state is guarded by the cluster lock (shared with an in-process agent); HTTP routes take
it, the cluster's ticker thread takes it for periodic work. Events to schedulers are
queued on their :class:`EventStream`, never written under the lock.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .agents import AgentRecord, ExecutorRecord
from .allocator import Allocator
from .auth import CHALLENGE, authenticate
from .frameworks import MAX_COMPLETED_FRAMEWORKS, MAX_COMPLETED_TASKS, Framework, Task
from .http import EventStream, Request, Response, StreamResponse
from .protocol import (
    APPLICATION_JSON,
    APPLICATION_PROTOBUF,
    JSON,
    MESOS_VERSION,
    TERMINAL_STATES,
    CallError,
    accepts_media_type,
    decode_json_call,
    event,
    task_status,
)
from .reconciliation import reconcile_known, reconcile_unknown
from .resources import Resources
from .state import (
    duration_flag,
    executor_info_json,
    framework_info_fields,
    resources_object,
    task_json,
    trim_status,
)
from .validation import parse_scheduler_call, validate_call, validate_task, validate_update

__all__ = ["Master", "MasterConfig"]

logger = logging.getLogger("ancho.embedded.master")


@dataclass(slots=True, frozen=True)
class MasterConfig:
    """Tunables of the master."""

    host: str
    port: int
    heartbeat_interval_s: float
    default_refuse_s: float
    #: Mesos' --offer_timeout: offers are rescinded after it; None keeps them (the default).
    offer_timeout_s: float | None = None
    #: Mesos' --authenticate_frameworks with --credentials: principal -> secret.
    credentials: dict[str, str] | None = None


class Master:
    """Scheduler-facing half of the embedded cluster."""

    def __init__(self, config: MasterConfig, lock: threading.RLock, wake: threading.Event):
        self.config = config
        self.lock = lock
        self.wake = wake
        self.master_id = str(uuid.uuid4())
        self.start_time = time.time()
        self.elected_time = self.start_time
        self.agents: dict[str, AgentRecord] = {}
        #: Agents removed as unreachable: they may come back (Mesos allows it).
        self._unreachable: set[str] = set()
        #: Agents a previous leader had, not re-registered yet: id -> deadline.
        self._recovering: dict[str, float] = {}
        #: Called with :meth:`registry` whenever it changes (the leader persists it).
        self.on_registry_change: Callable[[JSON], None] | None = None
        self._next_agent = 0
        self._frameworks: dict[str, Framework] = {}
        self._completed: set[str] = set()
        self._completed_frameworks: deque[Framework] = deque(maxlen=MAX_COMPLETED_FRAMEWORKS)
        self._next_framework = 0
        self._allocator = Allocator(
            self._frameworks,
            master_id=self.master_id,
            host=config.host,
            port=config.port,
            default_refuse_s=config.default_refuse_s,
            offer_timeout_s=config.offer_timeout_s,
        )

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

    # ------------------------------------------------------------------- agents
    def new_agent_id(self) -> str:
        """The id for the next agent to register: ``<master id>-S<n>``, as in Mesos."""
        agent_id = f"{self.master_id}-S{self._next_agent}"
        self._next_agent += 1
        return agent_id

    def add_agent(self, record: AgentRecord) -> None:
        """An agent registered or re-registered (call with the lock held)."""
        self.agents[record.agent_id] = record
        self._recovering.pop(record.agent_id, None)
        verb = "re-registered" if record.reregistered_time is not None else "registered"
        logger.info("agent %s at %s %s", record.agent_id, record.endpoint, verb)
        self._registry_changed()
        self.wake.set()

    # ----------------------------------------------------------------- registry
    def registry(self) -> JSON:
        """What must survive a master failover, as Mesos' replicated registry holds it:
        the admitted and the unreachable agents, and the removed frameworks."""
        return {
            "agents": sorted(set(self.agents) | set(self._recovering)),
            "unreachable": sorted(self._unreachable),
            "removed_frameworks": sorted(self._completed),
        }

    def restore(self, registry: JSON, reregister_timeout_s: float) -> None:
        """A newly elected leader takes over the registry: its agents have
        ``reregister_timeout_s`` (Mesos' --agent_reregister_timeout) to re-register
        before they are marked unreachable; removed frameworks stay removed."""
        deadline = time.time() + reregister_timeout_s
        for agent_id in registry.get("agents", []):
            if agent_id not in self.agents:
                self._recovering[agent_id] = deadline
        self._unreachable |= set(registry.get("unreachable", []))
        self._completed |= set(registry.get("removed_frameworks", []))

    def _registry_changed(self) -> None:
        if self.on_registry_change is not None:
            self.on_registry_change(self.registry())

    def agent_reregistered(self, record: AgentRecord, old: AgentRecord | None) -> None:
        """A known agent re-registered with what it runs now: what it no longer has is
        gone (TASK_LOST, or TASK_GONE for PARTITION_AWARE frameworks), as Mesos
        reconciles a re-registering agent."""
        if old is not None:
            for (framework_id, task_id), task in old.tasks.items():
                if (framework_id, task_id) in record.tasks:
                    continue
                framework = self._frameworks.get(framework_id)
                if framework is None or task.state in TERMINAL_STATES:
                    continue
                state = "TASK_GONE" if framework.partition_aware else "TASK_LOST"
                status = task_status(
                    task_id, state, source="SOURCE_MASTER", agent_id=record.agent_id,
                    executor_id=task.executor_id, reason="REASON_RECONCILIATION",
                    message="Reconciliation: task is unknown to the agent",
                )  # fmt: skip
                task.state = state
                task.statuses.append(trim_status(status))
                framework.tasks.pop(task_id, None)
                framework.completed_tasks.append(task)
                framework.send(event("UPDATE", {"status": status}))
            # Executors it no longer has are dropped from the books without a FAILURE
            # event: Mesos sends one only with the exit status an agent reports, and
            # schedulers (pymesos) read the status of every executor FAILURE.
        self._unreachable.discard(record.agent_id)
        self.add_agent(record)

    def recovered_task(self, agent_id: str, item: JSON) -> Task | None:
        """A task a re-registering agent reports (live, or terminated with its terminal
        update unacknowledged): the master's record of it, now in the reported state,
        or None when the task is not to be kept.

        After a master failover the task's framework may not have re-subscribed yet:
        the master then keeps the framework (from the FrameworkInfo the agent reports)
        as disconnected. As in Mesos 1.11 its failover timeout is not known to a new
        master (MESOS-4659): a framework that never re-subscribes is not removed, and
        its tasks run on, orphaned. An agent that was removed as unreachable and comes
        back keeps only the tasks of PARTITION_AWARE frameworks; the others' are shut
        down (Mesos tells the agent to shut those frameworks down).
        """
        framework_id = item["framework_id"]
        if framework_id in self._completed:
            return None
        framework = self._frameworks.get(framework_id)
        if framework is None:
            info = dict(item["framework_info"], id={"value": framework_id})
            framework = Framework(framework_id, info, registered_time=time.time())
            self._frameworks[framework_id] = framework
            logger.info("framework %s recovered from agent %s", framework_id, agent_id)
        if agent_id in self._unreachable and not framework.partition_aware:
            return None
        task = framework.tasks.get(item["task_id"])
        if task is None:
            task = Task(
                item["task_id"], item.get("executor_id"), item["state"],
                info=item.get("info") or {}, agent_id=agent_id,
                resources=Resources.from_json(item.get("resources", [])),
            )  # fmt: skip
            framework.tasks[task.task_id] = task
        task.state, task.agent_id = item["state"], agent_id
        return task

    def remove_agent(self, agent_id: str, why: str, *, unreachable: bool = False) -> None:
        """Forget an agent as Mesos' master removes one (``__removeSlave``): its offers
        go, each live task ends TASK_UNREACHABLE (PARTITION_AWARE frameworks, when
        unreachable), TASK_GONE_BY_OPERATOR (PARTITION_AWARE, removed) or TASK_LOST,
        with REASON_SLAVE_REMOVED, and each framework that ran there gets a FAILURE
        event naming the agent (pymesos' ``slaveLost``)."""
        agent = self.agents.pop(agent_id, None)
        if agent is None:
            return
        logger.warning("agent %s removed: %s", agent_id, why)
        if unreachable:
            self._unreachable.add(agent_id)
        self._registry_changed()
        self._allocator.remove_agent_offers(agent_id)
        touched = {framework_id for framework_id, _ in agent.executors}
        for (framework_id, task_id), task in agent.tasks.items():
            framework = self._frameworks.get(framework_id)
            if framework is None:
                continue
            touched.add(framework_id)
            state, reason = "TASK_LOST", "REASON_SLAVE_REMOVED"
            if framework.partition_aware and unreachable:
                state = "TASK_UNREACHABLE"
            elif framework.partition_aware:
                state, reason = "TASK_GONE_BY_OPERATOR", "REASON_SLAVE_REMOVED_BY_OPERATOR"
            status = task_status(
                task_id, state, source="SOURCE_MASTER", agent_id=agent_id,
                executor_id=task.executor_id, reason=reason,
                message=f"Agent {agent_id} {why}",
            )  # fmt: skip
            task.state = state
            task.statuses.append(trim_status(status))
            framework.tasks.pop(task_id, None)
            framework.completed_tasks.append(task)
            framework.send(event("UPDATE", {"status": status}))
        for framework_id in sorted(touched):
            framework = self._frameworks.get(framework_id)
            if framework is not None:
                framework.send(event("FAILURE", {"agent_id": {"value": agent_id}}))
        close = getattr(agent.link, "close", None)
        if close is not None:
            close()
        self.wake.set()

    # --------------------------------------------------------------------- HTTP
    def handle(self, request: Request) -> Response | StreamResponse:
        """Route for ``/api/v1/scheduler``, with Mesos' checks in Mesos' order."""
        credentials = self.config.credentials
        principal: str | None = None
        if credentials is not None:
            # libprocess authenticates before the endpoint sees the request.
            principal = authenticate(request.headers.get("Authorization"), credentials)
            if principal is None:
                return Response(401, headers={"WWW-Authenticate": CHALLENGE})
        try:
            call = parse_scheduler_call(decode_json_call(request))
            validate_call(call, principal)
            kind = call["type"]
            if kind in ("SUBSCRIBE", "RECONCILE_OPERATIONS"):
                self._check_accept(request)
            if kind == "SUBSCRIBE":
                return self._subscribe(call, request, principal)
            with self.lock:
                framework = self._caller(call, request, principal)
                if kind == "UNKNOWN":
                    return Response(501)
                handler = getattr(self, "_call_" + kind.lower())
                answer: Response | None = handler(framework, call)
            return answer if answer is not None else Response(202)
        except CallError as exc:
            return exc.response()

    @staticmethod
    def _check_accept(request: Request) -> None:
        # Mesos answers JSON or protobuf; the embedded cluster only JSON (RecordIO
        # framing inside an application/json response, as Mesos 1.11 does).
        accept = request.headers.get("Accept")
        if accepts_media_type(accept, APPLICATION_JSON):
            return
        if accepts_media_type(accept, APPLICATION_PROTOBUF):
            raise CallError(
                406,
                f"Expecting 'Accept' to allow '{APPLICATION_JSON}': the embedded cluster"
                f" does not speak '{APPLICATION_PROTOBUF}'",
            )
        raise CallError(
            406, f"Expecting 'Accept' to allow '{APPLICATION_PROTOBUF}' or '{APPLICATION_JSON}'"
        )

    def _caller(self, call: JSON, request: Request, principal: str | None) -> Framework:
        framework_id = call["framework_id"]["value"]
        framework = self._frameworks.get(framework_id)
        if framework is None:
            raise CallError(400, "Framework cannot be found")
        own = framework.info.get("principal", "")
        if principal is not None and principal != own:
            raise CallError(
                400,
                f"Authenticated principal '{principal}' does not match principal"
                f" '{own}' set in `FrameworkInfo`",
            )
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
    def _subscribe(self, call: JSON, request: Request, principal: str | None) -> StreamResponse:
        if request.headers.get("Mesos-Stream-Id"):
            raise CallError(400, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
        subscribe = call["subscribe"]
        info = dict(subscribe["framework_info"])
        if principal is not None and "principal" not in info:
            # Mesos fills in the authenticated principal (with a warning in its log).
            info["principal"] = principal
        framework_id: str | None = info.get("id", {}).get("value") or None
        stream = EventStream(str(uuid.uuid4()), on_close=self._stream_closed)
        response = StreamResponse(
            stream, content_type=APPLICATION_JSON, headers={"Mesos-Stream-Id": stream.stream_id}
        )
        now = time.time()
        with self.lock:
            if framework_id is not None and framework_id in self._completed:
                return self._refuse(response, "Framework has been removed")
            if framework_id is None:
                framework_id = f"{self.master_id}-{self._next_framework:04d}"
                self._next_framework += 1
            framework = self._frameworks.get(framework_id)
            if framework is None:
                # An unknown id is accepted, as a Mesos master does after its own
                # failover: the framework is trusted to own it.
                framework = Framework(framework_id, info, registered_time=now)
                self._frameworks[framework_id] = framework
                logger.info("framework %s (%s) subscribed", framework_id, info["name"])
            else:
                # As Mesos: user and checkpoint silently keep their first values
                # (MESOS-703); a different principal refuses the subscription.
                for immutable in ("user", "checkpoint"):
                    if immutable in framework.info:
                        info[immutable] = framework.info[immutable]
                    else:
                        info.pop(immutable, None)
                problem = validate_update(framework.info, info)
                if problem is not None:
                    return self._refuse(response, problem)
                self._failover(framework)
            framework.reregistered_time = now
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
            for agent in self.agents.values():
                agent.link.resend_updates(framework_id)
        self.wake.set()
        return response

    @staticmethod
    def _refuse(response: StreamResponse, message: str) -> StreamResponse:
        """A SUBSCRIBE Mesos refuses after accepting the request: ERROR, then the end."""
        response.stream.send(event("ERROR", {"message": message}))
        response.stream.close()
        return response

    def _failover(self, framework: Framework) -> None:
        old = framework.stream
        framework.stream = None
        if old is not None:
            old.send(event("ERROR", {"message": "Framework failed over"}))
            old.close()
        self._allocator.remove_offers(framework)
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
            self._allocator.remove_offers(framework)
            logger.info(
                "framework %s disconnected; failover timeout %.1fs",
                framework.framework_id,
                timeout,
            )
        self.wake.set()

    # -------------------------------------------------------------------- calls
    def _call_teardown(self, framework: Framework, call: JSON) -> None:
        self._remove_framework(framework, "teardown")

    def _call_decline(self, framework: Framework, call: JSON) -> None:
        body = call["decline"]
        self._allocator.decline(framework, body.get("offer_ids", []), body.get("filters"))
        self.wake.set()

    def _call_revive(self, framework: Framework, call: JSON) -> None:
        framework.filters.clear()
        framework.suppressed = False
        self.wake.set()

    def _call_suppress(self, framework: Framework, call: JSON) -> None:
        framework.suppressed = True

    def _call_accept(self, framework: Framework, call: JSON) -> None:
        body = call["accept"]
        launches: list[JSON] = []
        for operation in body.get("operations", []):
            if operation.get("type") == "LAUNCH":
                launches.extend(operation.get("launch", {}).get("task_infos", []))
            else:
                logger.warning("ignoring unsupported offer operation %s", operation.get("type"))
        # Offer validation first: one bad offer invalidates the whole call.
        pool, problem, agent_id = self._allocator.take(framework, body.get("offer_ids", []))
        agent = self.agents.get(agent_id)
        if problem is None and agent is None:
            problem = f"Agent {agent_id} is no longer registered"
        if problem is not None or agent is None:
            state = "TASK_DROPPED" if framework.partition_aware else "TASK_LOST"
            for task in launches:
                framework.send(
                    self._master_update(
                        task["task_id"]["value"],
                        state,
                        reason="REASON_INVALID_OFFERS",
                        message=f"Task launched with invalid offers: {problem}",
                        agent_id=agent_id or None,
                    )
                )
            self.wake.set()
            return
        for task in launches:
            pool = self._launch(framework, task, pool, agent)
        self._allocator.add_filter(
            framework, pool, body.get("filters"), only_if_given=True, agent_id=agent.agent_id
        )
        self.wake.set()

    def _launch(
        self, framework: Framework, task: JSON, pool: Resources, agent: AgentRecord
    ) -> Resources:
        task_id = task["task_id"]["value"]
        error, task_resources, executor_resources = validate_task(framework, task, pool, agent)
        if error is not None:
            framework.send(
                self._master_update(
                    task_id,
                    "TASK_ERROR",
                    reason="REASON_TASK_INVALID",
                    message=error,
                    agent_id=agent.agent_id,
                )
            )
            return pool
        executor = task["executor"]
        executor_id = executor["executor_id"]["value"]
        record = Task(
            task_id, executor_id, "TASK_STAGING", info=task, agent_id=agent.agent_id,
            resources=task_resources,
        )  # fmt: skip
        framework.tasks[task_id] = record
        framework_id = framework.framework_id
        running_as = dict(executor, framework_id={"value": framework_id})
        executor_record = ExecutorRecord(framework_id, executor_id, running_as, executor_resources)
        agent.task_launched(framework_id, record, executor_record)
        agent.link.launch_task(framework.info, executor, task, task_resources, executor_resources)
        return pool - task_resources - executor_resources

    def _call_kill(self, framework: Framework, call: JSON) -> None:
        task_id = call["kill"]["task_id"]["value"]
        task = framework.tasks.get(task_id)
        if task is None:
            # Mesos answers a kill of an unknown task with explicit reconciliation.
            framework.send(
                reconcile_unknown(framework, task_id, None, set(self.agents), self._unreachable)
            )
            return
        agent = self.agents.get(task.agent_id)
        if task.state in TERMINAL_STATES or agent is None:
            return
        agent.link.kill_task(framework.framework_id, task_id)

    def _call_shutdown(self, framework: Framework, call: JSON) -> None:
        executor_id = call["shutdown"]["executor_id"]["value"]
        agent = self.agents.get(call["shutdown"]["agent_id"]["value"])
        if agent is not None:
            agent.link.shutdown_executor(framework.framework_id, executor_id)

    def _call_acknowledge(self, framework: Framework, call: JSON) -> None:
        body = call["acknowledge"]
        task_id = body["task_id"]["value"]
        agent = self.agents.get(body["agent_id"]["value"])
        if agent is not None:
            agent.link.acknowledge(framework.framework_id, task_id, body["uuid"])
        task = framework.tasks.get(task_id)
        acked = task.unacked.pop(body["uuid"], None) if task is not None else None
        if acked in TERMINAL_STATES:
            # The master forgets a task once its terminal update is acknowledged.
            done = framework.tasks.pop(task_id, None)
            if done is not None:
                framework.completed_tasks.append(done)

    def _call_reconcile(self, framework: Framework, call: JSON) -> None:
        wanted = call["reconcile"].get("tasks", [])
        if not wanted:
            for task in framework.tasks.values():
                framework.send(reconcile_known(task, task.agent_id))
            return
        for item in wanted:
            task_id = item["task_id"]["value"]
            known = framework.tasks.get(task_id)
            if known is not None:
                framework.send(reconcile_known(known, known.agent_id))
            else:
                agent_id = item.get("agent_id", {}).get("value")
                if agent_id in self._recovering:
                    continue  # no answer until the agent re-registers or times out (Mesos)
                framework.send(
                    reconcile_unknown(
                        framework, task_id, agent_id, set(self.agents), self._unreachable
                    )
                )

    def _call_message(self, framework: Framework, call: JSON) -> None:
        body = call["message"]
        executor_id = body["executor_id"]["value"]
        agent = self.agents.get(body["agent_id"]["value"])
        if agent is not None:
            agent.link.message_to_executor(framework.framework_id, executor_id, body["data"])

    def _call_update_framework(self, framework: Framework, call: JSON) -> Response:
        info = call["update_framework"]["framework_info"]
        problem = validate_update(framework.info, info)
        if problem is not None:
            raise CallError(400, f"FrameworkInfo update is not valid: {problem}")
        framework.info = dict(info)
        return Response(200)  # Mesos answers UPDATE_FRAMEWORK with 200 OK, not 202

    def _call_request(self, framework: Framework, call: JSON) -> None:
        """REQUEST is a no-op in Mesos' allocator too."""

    def _call_reconcile_operations(self, framework: Framework, call: JSON) -> None:
        """No offer operations other than LAUNCH exist here: nothing to reconcile."""

    def _call_accept_inverse_offers(self, framework: Framework, call: JSON) -> None:
        """No maintenance schedules, hence no inverse offers."""

    _call_decline_inverse_offers = _call_accept_inverse_offers
    _call_acknowledge_operation_status = _call_reconcile_operations

    # ------------------------------------------------------- status and events
    def _master_update(
        self, task_id: str, state: str, *, reason: str, message: str, agent_id: str | None
    ) -> JSON:
        status = task_status(
            task_id,
            state,
            source="SOURCE_MASTER",
            agent_id=agent_id,
            reason=reason,
            message=message,
        )
        return event("UPDATE", {"status": status})

    def forward_update(self, agent_id: str, framework_id: str, status: JSON) -> None:
        """Deliver an agent's update to a scheduler (dropped while it is disconnected)."""
        framework = self._frameworks.get(framework_id)
        if framework is None:
            return
        task = framework.tasks.get(status["task_id"]["value"])
        if task is not None and isinstance(status.get("uuid"), str):
            task.unacked[status["uuid"]] = status["state"]
            if task.state not in TERMINAL_STATES and task.state != status["state"]:
                # An update the master had not heard of as the task's latest state (a
                # restarted agent re-sends what happened while it was away).
                self.task_state_changed(agent_id, framework_id, task.task_id, status)
        framework.send(event("UPDATE", {"status": status}))

    def task_state_changed(
        self, agent_id: str, framework_id: str, task_id: str, status: JSON
    ) -> None:
        """An agent learnt a task's new latest state (``status``, an update)."""
        framework = self._frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        if task is not None:
            task.state = status["state"]
            task.statuses.append(trim_status(status))
            if task.state in TERMINAL_STATES:
                self.wake.set()
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.task_state(framework_id, task_id, status["state"])

    def executor_message(
        self, agent_id: str, framework_id: str, executor_id: str, data: str
    ) -> None:
        """An executor's framework message, best effort as in Mesos."""
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            body = {
                "agent_id": {"value": agent_id},
                "executor_id": {"value": executor_id},
                "data": data,
            }
            framework.send(event("MESSAGE", body))

    def executor_terminated(
        self, agent_id: str, framework_id: str, executor_id: str, status: int
    ) -> None:
        """Tell the scheduler an executor is gone (FAILURE event)."""
        agent = self.agents.get(agent_id)
        if agent is not None:
            agent.executor_gone(framework_id, executor_id)
        framework = self._frameworks.get(framework_id)
        if framework is not None:
            body = {
                "agent_id": {"value": agent_id},
                "executor_id": {"value": executor_id},
                "status": status,
            }
            framework.send(event("FAILURE", body))
        self.wake.set()

    # ------------------------------------------------ removal and periodic work
    def _remove_framework(self, framework: Framework, why: str) -> None:
        logger.info("removing framework %s (%s)", framework.framework_id, why)
        self._allocator.remove_offers(framework)
        for agent in self.agents.values():
            agent.link.shutdown_framework(framework.framework_id)
            agent.drop_framework(framework.framework_id)
        now = time.time()
        for task in framework.tasks.values():
            # As Mesos: the framework's tasks end TASK_KILLED in its completed tasks.
            if task.state not in TERMINAL_STATES:
                task.state = "TASK_KILLED"
                task.statuses.append({"state": "TASK_KILLED", "timestamp": now})
            framework.completed_tasks.append(task)
        framework.tasks.clear()
        framework.unregistered_time = now
        self._completed_frameworks.append(framework)
        if framework.stream is not None:
            framework.stream.close()
            framework.stream = None
        del self._frameworks[framework.framework_id]
        self._completed.add(framework.framework_id)
        self._registry_changed()
        self.wake.set()

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
        for agent_id, deadline in list(self._recovering.items()):
            if deadline <= now:
                # Mesos marks an agent that missed --agent_reregister_timeout unreachable.
                logger.warning("agent %s did not re-register in time: unreachable", agent_id)
                del self._recovering[agent_id]
                self._unreachable.add(agent_id)
                for framework in self._frameworks.values():
                    framework.send(event("FAILURE", {"agent_id": {"value": agent_id}}))
                self._registry_changed()
        self._allocator.rescind_expired(now)
        shares: dict[str, float] = {}
        for agent in self.agents.values():
            for framework_id in self._frameworks:
                held = agent.framework_cpus(framework_id)
                shares[framework_id] = shares.get(framework_id, 0.0) + held
        for agent in self.agents.values():
            self._allocator.allocate(agent, now, shares)

    # ---------------------------------------------------------- state endpoint
    def state_route(self, request: Request) -> Response:
        """Route for ``/master/state``: Mesos 1.11's JSON of the master's state."""
        with self.lock:
            body = json.dumps(self.state())
        return Response(200, body.encode(), "application/json")

    def state(self) -> JSON:
        """The master's state as ``/master/state`` shows it (call with the lock held)."""
        info = self.master_info()
        host = self.config.host
        return {
            "version": MESOS_VERSION,
            "build_date": "",
            "build_time": 0,
            "build_user": "ancho",
            "start_time": self.start_time,
            "elected_time": self.elected_time,
            "id": self.master_id,
            "pid": info["pid"],
            "hostname": info["hostname"],
            "capabilities": [],
            "activated_slaves": float(len(self.agents)),
            "deactivated_slaves": 0.0,
            "unreachable_slaves": float(len(self._unreachable)),
            "leader": info["pid"],
            "leader_info": {
                "id": info["id"],
                "pid": info["pid"],
                "port": info["port"],
                "hostname": info["hostname"],
            },
            "flags": {
                "allocation_interval": "100ms",
                "authenticate_agents": "false",
                "authenticate_frameworks": "false",
                "authenticate_http_frameworks": str(self.config.credentials is not None).lower(),
                "authenticate_http_readonly": "false",
                "hostname": host,
                "ip": host,
                "max_completed_frameworks": str(MAX_COMPLETED_FRAMEWORKS),
                "max_completed_tasks_per_framework": str(MAX_COMPLETED_TASKS),
                "port": str(self.config.port),
                **self._optional_flags(),
            },
            "slaves": [
                a.summary(self._allocator.offered(a.agent_id)) for a in self.agents.values()
            ],
            "recovered_slaves": [],
            "frameworks": [self._framework_state(f) for f in self._frameworks.values()],
            "completed_frameworks": [self._framework_state(f) for f in self._completed_frameworks],
            "orphan_tasks": [],
            "unregistered_frameworks": [],
        }

    def _optional_flags(self) -> dict[str, str]:
        flags: dict[str, str] = {}
        if self.config.offer_timeout_s is not None:
            flags["offer_timeout"] = duration_flag(self.config.offer_timeout_s)
        if self.config.credentials is not None:
            flags["http_framework_authenticators"] = "basic"
        return flags

    def _framework_state(self, framework: Framework) -> JSON:
        framework_id = framework.framework_id
        info = framework.info
        connected = framework.stream is not None
        removed = framework_id in self._completed
        used = Resources()
        if not removed:
            for agent in self.agents.values():
                used = used + agent.framework_resources(framework_id)
        offers = [] if removed else self._allocator.offers_of(framework_id)
        offered = Resources()
        for offer in offers:
            offered = offered + offer.resources
        state: JSON = {
            "id": framework_id,
            "name": info.get("name", ""),
            "used_resources": resources_object(used),
            "offered_resources": resources_object(offered),
            "capabilities": list(info.get("capabilities", [])),
            "hostname": info.get("hostname", ""),
            "webui_url": info.get("webui_url", ""),
            "active": connected and not removed,
            "connected": connected and not removed,
            "recovered": False,
            **framework_info_fields(info),
            "registered_time": framework.registered_time,
            "unregistered_time": framework.unregistered_time,
            "resources": resources_object(used + offered),
        }
        if framework.reregistered_time != framework.registered_time:
            state["reregistered_time"] = framework.reregistered_time
        state["tasks"] = [self._task_state(framework, t) for t in framework.tasks.values()]
        state["unreachable_tasks"] = []
        state["completed_tasks"] = [
            self._task_state(framework, t) for t in framework.completed_tasks
        ]
        state["offers"] = [
            {
                "id": offer.offer_id,
                "framework_id": framework_id,
                "allocation_info": {"role": "*"},
                "slave_id": offer.agent_id,
                "resources": resources_object(offer.resources),
            }
            for offer in offers
        ]
        state["executors"] = [
            {**executor_info_json(e), "slave_id": agent.agent_id}
            for agent in ([] if removed else self.agents.values())
            for e in agent.executor_infos(framework_id)
        ]
        labels = info.get("labels")
        if isinstance(labels, dict):
            state["labels"] = list(labels.get("labels", []))
        state["offer_constraints"] = {}
        return state

    def _task_state(self, framework: Framework, task: Task) -> JSON:
        return task_json(task.info or {"task_id": {"value": task.task_id}},
                         framework_id=framework.framework_id, agent_id=task.agent_id,
                         state=task.state, resources=task.resources,
                         statuses=task.statuses)  # fmt: skip

    def stop(self) -> None:
        """Close every scheduler stream."""
        for framework in self._frameworks.values():
            if framework.stream is not None:
                framework.stream.close()
