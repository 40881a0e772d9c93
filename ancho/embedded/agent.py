"""The agent half: executor API, executor lifecycle and status updates.

Every method except the container threads runs with the cluster lock held. Each
executor has one thread that starts its container and then waits for it to exit;
that is the only place the agent blocks, and it does so without the lock.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from . import recovery
from .containerizer import Container, Containerizer, ContainerSpec, LaunchError
from .fetcher import Fetcher, FetchError
from .http import EventStream, Request, Response, StreamResponse
from .protocol import (
    JSON,
    MESOS_VERSION,
    TASK_STATES,
    TERMINAL_STATES,
    CallError,
    event,
    id_value,
    is_uuid,
    parse_call,
    task_status,
)
from .resources import Resources
from .state import framework_info_fields, resources_object, task_info_json, task_json, trim_status
from .updates import StatusUpdateManager

if TYPE_CHECKING:
    from .agents import MasterLink

__all__ = ["Agent", "AgentConfig"]

logger = logging.getLogger("ancho.embedded.agent")

# How long after SIGTERM a shutting-down executor's process group gets SIGKILL.
_KILL_AFTER_TERM_S = 2.0
# What the state endpoint remembers of the past (Mesos' agent constants).
MAX_COMPLETED_TASKS_PER_EXECUTOR = 200
MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK = 150
MAX_COMPLETED_FRAMEWORKS = 50


@dataclass(slots=True, frozen=True)
class AgentConfig:
    """Tunables of the agent."""

    host: str
    port: int
    work_dir: Path
    total: Resources
    heartbeat_interval_s: float
    status_update_retry_s: float
    executor_shutdown_grace_s: float
    #: Mesos' --executor_registration_timeout (1 minute by default).
    executor_registration_timeout_s: float = 60.0
    #: How often the agent sends each subscribed executor a HEARTBEAT (30 minutes in Mesos).
    executor_heartbeat_interval_s: float = 1800.0
    #: Mesos' --executor_reregistration_timeout: how long a restarted agent waits for
    #: its recovered executors to re-subscribe (2 seconds by default).
    executor_reregistration_timeout_s: float = 2.0
    #: Mesos' --executor_environment_variables: what every executor's environment
    #: starts from (the MESOS_* variables and the CommandInfo's own go over it).
    executor_environment: dict[str, str] = field(default_factory=dict)
    #: Mesos' --recovery_timeout (15 minutes): how long the executors of checkpointing
    #: frameworks wait for a restarted agent before they end (MESOS_RECOVERY_TIMEOUT).
    recovery_timeout_s: float = 900.0


@dataclass(slots=True)
class _Task:
    info: JSON
    resources: Resources
    state: str = "TASK_STAGING"
    launched: bool = False  # delivered to the executor
    uuids: set[str] = field(default_factory=set)
    statuses: list[JSON] = field(default_factory=list)  # what the state endpoint shows


_ExecutorState = Literal["LAUNCHING", "RUNNING", "TERMINATING", "TERMINATED"]


@dataclass(slots=True)
class _Executor:
    framework_id: str
    executor_id: str
    info: JSON
    framework_info: JSON
    container_id: str
    directory: Path
    resources: Resources
    grace_s: float
    state: _ExecutorState = "LAUNCHING"
    tasks: dict[str, _Task] = field(default_factory=dict)
    stream: EventStream | None = None
    container: Container | None = None
    silent: bool = False  # framework removed: no updates or FAILURE when it ends
    sigterm_at: float | None = None
    sigkill_at: float | None = None
    next_heartbeat: float = 0.0
    #: When an executor that has not subscribed by then is destroyed.
    registration_deadline: float = float("inf")
    #: Mesos' pendingTermination: (state, reason, message) its tasks end with once it
    #: is gone.
    pending: tuple[str, str, str] | None = None
    #: Recovered from a checkpoint by a restarted agent: REGISTERING until it re-subscribes.
    recovered: bool = False
    #: Set when the container is destroyed: a fetch in progress gives up.
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    #: Tasks whose terminal update was acknowledged (the newest ones).
    completed_tasks: deque[_Task] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS_PER_EXECUTOR)
    )


@dataclass(slots=True)
class _FrameworkRecord:
    """What the agent's state endpoint shows of a framework: its info, past executors."""

    info: JSON
    completed_executors: deque[_Executor] = field(
        default_factory=lambda: deque(maxlen=MAX_COMPLETED_EXECUTORS_PER_FRAMEWORK)
    )


#: Mesos' Duration units, smallest first, in nanoseconds.
_UNITS = (
    ("ns", 1), ("us", 10**3), ("ms", 10**6), ("secs", 10**9), ("mins", 60 * 10**9),
    ("hrs", 3600 * 10**9), ("days", 86400 * 10**9), ("weeks", 7 * 86400 * 10**9),
)  # fmt: skip


def _duration(seconds: float) -> str:
    """``seconds`` as Mesos prints a Duration (``500ms``, ``5secs``, ``1mins``, ``90secs``).

    The largest unit not above the value, or the next smaller one when only that gives
    a whole number; parseable by pymesos.utils.parse_duration.
    """
    ns = round(seconds * 1e9)
    if ns < 0:
        return "-" + _duration(-seconds)
    index = max((i for i, (_, size) in enumerate(_UNITS) if ns >= size), default=0)
    unit, size = _UNITS[index]
    if index > 0 and ns % size != 0 and ns % _UNITS[index - 1][1] == 0:
        unit, size = _UNITS[index - 1]
    return f"{ns / size:.15g}{unit}"


class Agent:
    """Executor-facing half of the embedded cluster."""

    def __init__(
        self,
        config: AgentConfig,
        containerizer: Containerizer,
        lock: threading.RLock,
        agent_id: str = "",
    ) -> None:
        self.config = config
        self.lock = lock
        self.containerizer = containerizer
        #: Given by the master when the agent registers.
        self.agent_id = agent_id
        #: How the agent reaches its master; set when it registers (see :meth:`attach`).
        self.master: MasterLink = _NoMaster()
        self.master_hostname = ""
        self.total = config.total
        self.updates = StatusUpdateManager(config.status_update_retry_s, self._forward)
        self._executors: dict[tuple[str, str], _Executor] = {}
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self.start_time = time.time()
        self._frameworks: dict[str, _FrameworkRecord] = {}
        self._completed_frameworks: deque[tuple[str, _FrameworkRecord]] = deque(
            maxlen=MAX_COMPLETED_FRAMEWORKS
        )
        # Mesos' default --fetcher_cache_dir is outside its work dir; ours is inside,
        # so that one cluster's cache goes away with it.
        self.fetcher = Fetcher(config.work_dir / "fetch")

    def _forward(self, framework_id: str, status: JSON) -> None:
        self.master.forward_update(framework_id, status)

    def attach(self, master: MasterLink, agent_id: str, master_hostname: str) -> None:
        """Registered: the link to the master and the id it gave this agent."""
        self.master = master
        self.agent_id = agent_id
        self.master_hostname = master_hostname

    def registration(self) -> JSON:
        """What a (re-)registration tells the master: this agent, its live executors,
        their tasks and, as Mesos' agent does, the terminated tasks whose terminal
        update is not acknowledged yet, also those of executors that have ended, with
        their frameworks' infos (call with the lock held). A master that heard of a
        task ending only from this report then knows it ended, rather than answering
        reconciliation and re-registration with TASK_GONE for it."""
        executors, tasks = [], []
        for executor in self._executors.values():
            if executor.state == "TERMINATED":
                continue
            executors.append(
                {
                    "framework_id": executor.framework_id,
                    "executor_id": executor.executor_id,
                    "info": executor.info,
                    "resources": executor.resources.to_json(),
                }
            )
        for executor in self._reported_executors():
            for task_id, task in executor.tasks.items():
                live = executor.state != "TERMINATED" and task.state not in TERMINAL_STATES
                if not live and not self.updates.unacknowledged(executor.framework_id, task_id):
                    continue
                tasks.append(
                    {
                        "framework_id": executor.framework_id,
                        "framework_info": executor.framework_info,
                        "executor_id": executor.executor_id,
                        "task_id": task_id,
                        "state": task.state,
                        "info": task.info,
                        "resources": task.resources.to_json(),
                    }
                )
        return {
            "agent_id": self.agent_id,
            "hostname": self.config.host,
            "port": self.config.port,
            "resources": self.total.to_json(),
            "executors": executors,
            "tasks": tasks,
        }

    def _reported_executors(self) -> list[_Executor]:
        """Live executors, then the terminated ones still remembered."""
        ended = [e for r in self._frameworks.values() for e in r.completed_executors]
        ended += [e for _, r in self._completed_frameworks for e in r.completed_executors]
        return list(self._executors.values()) + ended

    def registered(self) -> None:
        """Just (re-)registered: re-send every unacknowledged update to the new master."""
        now = time.time()
        for framework_id in {e.framework_id for e in self._executors.values()}:
            self.updates.resend(framework_id, now)

    @property
    def endpoint(self) -> str:
        """``host:port`` executors connect to."""
        return f"{self.config.host}:{self.config.port}"

    def agent_info(self) -> JSON:
        """AgentInfo as sent to executors."""
        return {
            "hostname": self.config.host,
            "port": self.config.port,
            "id": {"value": self.agent_id},
            "resources": self.total.to_json(),
            "attributes": [],
        }

    def used_resources(self) -> Resources:
        """Resources held by live executors and their non-terminal tasks."""
        used = Resources()
        for executor in self._executors.values():
            used = used + executor.resources
            for task in executor.tasks.values():
                if task.state not in TERMINAL_STATES:
                    used = used + task.resources
        return used

    # ------------------------------------------------------- master's commands
    def launch_task(
        self,
        framework_info: JSON,
        executor_info: JSON,
        task_info: JSON,
        task_resources: Resources,
        executor_resources: Resources,
    ) -> None:
        """Run a validated task, starting its executor if it is not running yet."""
        framework_id = framework_info["id"]["value"]
        executor_id = executor_info["executor_id"]["value"]
        task_id = task_info["task_id"]["value"]
        executor = self._executors.get((framework_id, executor_id))
        if executor is None:
            executor = self._new_executor(
                framework_info, executor_info, executor_resources, task_resources
            )
        task = _Task(task_info, task_resources)
        executor.tasks[task_id] = task
        self._checkpoint(executor)
        if executor.state == "TERMINATING":
            self._task_update(
                executor, task_id, "TASK_LOST", "REASON_EXECUTOR_TERMINATED",
                "Executor is terminating",
            )  # fmt: skip
        elif executor.state == "RUNNING" and executor.stream is not None:
            executor.stream.send(event("LAUNCH", {"task": task_info}))
            task.launched = True

    def _new_executor(
        self, framework_info: JSON, info: JSON, resources: Resources, first_task: Resources
    ) -> _Executor:
        framework_id = framework_info["id"]["value"]
        executor_id = info["executor_id"]["value"]
        container_id = str(uuid.uuid4())
        runs = (
            self.config.work_dir / "slaves" / self.agent_id / "frameworks" / framework_id
            / "executors" / executor_id / "runs"
        )  # fmt: skip
        grace = self.config.executor_shutdown_grace_s
        if isinstance(info.get("shutdown_grace_period"), dict):
            grace = int(info["shutdown_grace_period"].get("nanoseconds", 0)) / 1e9
        executor = _Executor(
            framework_id=framework_id,
            executor_id=executor_id,
            info=dict(info, framework_id={"value": framework_id}),
            framework_info=framework_info,
            container_id=container_id,
            directory=runs / container_id,
            resources=resources,
            grace_s=grace,
            registration_deadline=time.time() + self.config.executor_registration_timeout_s,
        )
        self._executors[(framework_id, executor_id)] = executor
        record = self._frameworks.setdefault(framework_id, _FrameworkRecord(framework_info))
        record.info = framework_info
        spec = ContainerSpec(
            container_id=container_id,
            directory=executor.directory,
            command=info.get("command", {}),
            container=info.get("container"),
            environment=self._environment(executor),
            cpus=resources.scalar("cpus") + first_task.scalar("cpus"),
            mem_mb=resources.scalar("mem") + first_task.scalar("mem"),
            labels={
                "ancho.mesos.framework": framework_id,
                "ancho.mesos.executor": executor_id,
                "ancho.mesos.container": container_id,
            },
            user=framework_info.get("user") or None,
        )
        thread = threading.Thread(
            target=self._run_container,
            args=(executor, spec, runs),
            name=f"ancho-embedded-executor-{executor_id}",
            daemon=True,
        )
        executor.thread = thread
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(thread)
        thread.start()
        return executor

    def _environment(self, executor: _Executor) -> dict[str, str]:
        checkpoint = bool(executor.framework_info.get("checkpoint", False))
        # Mesos' executorEnvironment(): no variable of the agent's own environment
        # except LIBPROCESS_IP (which an agent started with --ip has, as this one is),
        # LIBPROCESS_PORT=0 so that a libprocess executor binds any port, then MESOS_*.
        # MESOS_SANDBOX is the containerizer's (a Docker one points it inside).
        env = {
            **self.config.executor_environment,
            "LIBPROCESS_IP": self.config.host,
            "LIBPROCESS_PORT": "0",
            "MESOS_FRAMEWORK_ID": executor.framework_id,
            "MESOS_EXECUTOR_ID": executor.executor_id,
            "MESOS_DIRECTORY": str(executor.directory),
            "MESOS_SANDBOX": str(executor.directory),
            "MESOS_SLAVE_ID": self.agent_id,
            "MESOS_SLAVE_PID": f"slave(1)@{self.endpoint}",
            "MESOS_AGENT_ENDPOINT": self.endpoint,
            # Exactly what Mesos sets; note pymesos reads any non-empty value as true.
            "MESOS_CHECKPOINT": "1" if checkpoint else "0",
            "MESOS_HTTP_COMMAND_EXECUTOR": "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": _duration(executor.grace_s),
        }
        if checkpoint:
            env["MESOS_RECOVERY_TIMEOUT"] = _duration(self.config.recovery_timeout_s)
            env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = "2secs"
        return env

    def kill_task(self, framework_id: str, task_id: str) -> None:
        """Kill a task: forward to its executor, or kill it here if not yet delivered."""
        for executor in self._executors.values():
            task = executor.tasks.get(task_id)
            if executor.framework_id != framework_id or task is None:
                continue
            if task.state in TERMINAL_STATES:
                return
            if task.launched:
                if executor.stream is not None:
                    executor.stream.send(event("KILL", {"task_id": {"value": task_id}}))
                return
            self._task_update(
                executor, task_id, "TASK_KILLED", "REASON_TASK_KILLED_DURING_LAUNCH",
                "Killed before delivery to the executor",
            )  # fmt: skip
            live = [t for t in executor.tasks.values() if t.state not in TERMINAL_STATES]
            if executor.state == "LAUNCHING" and not live:
                self.shutdown_executor(framework_id, executor.executor_id)
            return

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None:
        """SHUTDOWN event now, SIGTERM after the grace period, SIGKILL after that."""
        executor = self._executors.get((framework_id, executor_id))
        if executor is None or executor.state in ("TERMINATING", "TERMINATED"):
            return
        now = time.time()
        subscribed = executor.state == "RUNNING" and executor.stream is not None
        executor.state = "TERMINATING"
        if executor.container is None:
            executor.cancel.set()  # still fetching: the container never starts
        if subscribed and executor.stream is not None:
            executor.stream.send(event("SHUTDOWN"))
            executor.sigterm_at = now + executor.grace_s
        else:
            executor.sigterm_at = now
        executor.sigkill_at = executor.sigterm_at + _KILL_AFTER_TERM_S
        self._escalate(executor, now)

    def shutdown_framework(self, framework_id: str) -> None:
        """Shut down a removed framework's executors and forget its updates."""
        for executor in list(self._executors.values()):
            if executor.framework_id == framework_id:
                executor.silent = True
                self.shutdown_executor(framework_id, executor.executor_id)
        self.updates.drop_framework(framework_id)

    def acknowledge(self, framework_id: str, task_id: str, uuid_: str) -> JSON | None:
        """A scheduler acknowledged an update; tell the executor; return the update."""
        acked = self.updates.acknowledge(framework_id, task_id, uuid_, time.time())
        if acked is None:
            return None
        for executor in self._executors.values():
            task = executor.tasks.get(task_id)
            if executor.framework_id != framework_id or task is None:
                continue
            if acked.get("source") == "SOURCE_EXECUTOR" and executor.stream is not None:
                body = {"task_id": {"value": task_id}, "uuid": uuid_}
                executor.stream.send(event("ACKNOWLEDGED", body))
            if acked["state"] in TERMINAL_STATES:
                executor.completed_tasks.append(executor.tasks.pop(task_id))
            break
        return acked

    def message_to_executor(self, framework_id: str, executor_id: str, data: str) -> None:
        """A scheduler's framework message (dropped when the executor is not connected)."""
        executor = self._executors.get((framework_id, executor_id))
        if executor is not None and executor.stream is not None:
            executor.stream.send(event("MESSAGE", {"data": data}))

    # ------------------------------------------------------------ executor API
    def handle(self, request: Request) -> Response | StreamResponse:
        """Route for ``/api/v1/executor``."""
        try:
            call = parse_call(request)
            framework_id = id_value(call, "framework_id")
            executor_id = id_value(call, "executor_id")
            assert framework_id is not None and executor_id is not None
            if call["type"] == "UPDATE":
                _validate_update(call, framework_id, executor_id)
            elif call["type"] == "HEARTBEAT":
                return Response(202)  # as Mesos: answered before the executor is looked up
            with self.lock:
                executor = self._executors.get((framework_id, executor_id))
                if executor is None or executor.state == "TERMINATED":
                    raise CallError(400, f"Executor {executor_id} of {framework_id} is unknown")
                if call["type"] == "SUBSCRIBE":
                    return self._subscribe(executor, call)
                if executor.stream is None:
                    raise CallError(403, "Executor is not subscribed")
                if call["type"] == "UPDATE":
                    self._update(executor, (call.get("update") or {}).get("status"))
                elif call["type"] == "MESSAGE":
                    data = (call.get("message") or {}).get("data")
                    if not isinstance(data, str):
                        raise CallError(400, "Expecting 'message.data' to be present")
                    self.master.executor_message(framework_id, executor_id, data)
                else:
                    raise CallError(400, f"Unsupported call type {call['type']!r}")
            return Response(202)
        except CallError as exc:
            return exc.response()

    def _subscribe(self, executor: _Executor, call: JSON) -> StreamResponse:
        if executor.stream is not None:
            executor.stream.close()  # a re-subscription replaces the old connection
        stream = EventStream(str(uuid.uuid4()), on_close=self._stream_closed)
        executor.stream = stream
        stream.send(
            event(
                "SUBSCRIBED",
                {
                    "executor_info": executor.info,
                    "framework_info": executor.framework_info,
                    "agent_info": self.agent_info(),
                    "container_id": {"value": executor.container_id},
                },
            )
        )
        if executor.state == "LAUNCHING":
            executor.state = "RUNNING"
        subscribe = call.get("subscribe") or {}
        for update in subscribe.get("unacknowledged_updates", []):
            # Updates the executor sent but never saw acknowledged: ones this agent
            # has not received yet are taken now; known ones are already in flight.
            status = update.get("status") if isinstance(update, dict) else None
            if not isinstance(status, dict) or not isinstance(status.get("task_id"), dict):
                continue
            task = executor.tasks.get(status["task_id"].get("value", ""))
            if task is not None and status.get("uuid") not in task.uuids:
                try:
                    self._update(executor, status)
                except CallError as exc:
                    logger.warning("dropping unacknowledged update: %s", exc.message)
        # Tasks the executor has, and has not seen an update of acknowledged.
        reported = subscribe.get("unacknowledged_tasks", [])
        known = {t["task_id"].get("value") for t in reported
                 if isinstance(t, dict) and isinstance(t.get("task_id"), dict)}  # fmt: skip
        for task_id, task in list(executor.tasks.items()):
            if task.state != "TASK_STAGING" or task_id in known:
                continue
            if task.launched:
                # Sent, but the executor never got it (the agent died, or its stream
                # broke, with the LAUNCH in flight): as Mesos' agent, TASK_DROPPED.
                state = "TASK_DROPPED" if _partition_aware(executor) else "TASK_LOST"
                self._task_update(executor, task_id, state, "REASON_SLAVE_RESTARTED",
                                  "Task launched during agent restart")  # fmt: skip
            else:
                stream.send(event("LAUNCH", {"task": task.info}))
                task.launched = True
        if executor.state == "TERMINATING":
            stream.send(event("SHUTDOWN"))
        executor.next_heartbeat = time.time() + self.config.executor_heartbeat_interval_s
        logger.info("executor %s subscribed", executor.executor_id)
        return StreamResponse(stream)

    def _stream_closed(self, stream: EventStream) -> None:
        with self.lock:
            for executor in self._executors.values():
                if executor.stream is stream:
                    executor.stream = None
                    logger.info("executor %s disconnected", executor.executor_id)

    def _update(self, executor: _Executor, status: object) -> None:
        if not isinstance(status, dict):
            raise CallError(400, "Expecting 'update.status' to be present")
        task_id = id_value(status, "task_id")
        state = status.get("state")
        if state not in TASK_STATES or state == "TASK_STAGING":
            raise CallError(400, f"Invalid task state {state!r} in status update")
        uuid_ = status.get("uuid")
        if not isinstance(uuid_, str) or not uuid_:
            raise CallError(400, "Status update must carry a 'uuid'")
        task = executor.tasks.get(task_id or "")
        if task is None:
            raise CallError(400, f"Task {task_id} is unknown to executor {executor.executor_id}")
        if uuid_ in task.uuids:
            return  # a duplicate: already queued for delivery
        if task.state in TERMINAL_STATES:
            logger.warning("ignoring %s for terminated task %s", state, task_id)
            return
        status = dict(status)
        status["agent_id"] = {"value": self.agent_id}
        status["executor_id"] = {"value": executor.executor_id}
        status["source"] = "SOURCE_EXECUTOR"
        status["timestamp"] = float(status.get("timestamp") or time.time())
        task.uuids.add(uuid_)
        self._record(executor, task, status)

    def _task_update(
        self, executor: _Executor, task_id: str, state: str, reason: str, message: str
    ) -> None:
        """An update generated by the agent itself (reliable, with a uuid)."""
        status = task_status(
            task_id,
            state,
            source="SOURCE_AGENT",
            agent_id=self.agent_id,
            executor_id=executor.executor_id,
            reason=reason,
            message=message,
            with_uuid=True,
        )
        self._record(executor, executor.tasks[task_id], status)

    def _record(self, executor: _Executor, task: _Task, status: JSON) -> None:
        task.state = status["state"]
        task.statuses.append(trim_status(status))
        task_id = status["task_id"]["value"]
        self.master.task_state_changed(executor.framework_id, task_id, status)
        self.updates.add(executor.framework_id, status, time.time())
        self._checkpoint(executor)

    # -------------------------------------------------------------- recovery
    def _checkpoint_folder(self, executor: _Executor) -> Path:
        return recovery.run_folder(
            self.config.work_dir, self.agent_id, executor.framework_id,
            executor.executor_id, executor.container_id,
        )  # fmt: skip

    def _checkpoint(self, executor: _Executor) -> None:
        """Write the executor's checkpoint, for frameworks that checkpoint (as Mesos)."""
        if not executor.framework_info.get("checkpoint") or executor.container is None:
            return
        if executor.state == "TERMINATED":
            return
        record = {
            "framework_id": executor.framework_id,
            "executor_id": executor.executor_id,
            "framework_info": executor.framework_info,
            "info": executor.info,
            "container_id": executor.container_id,
            "directory": str(executor.directory),
            "resources": executor.resources.to_json(),
            "grace_s": executor.grace_s,
            "pid": executor.container.pid,
            "tasks": [
                {"info": t.info, "resources": t.resources.to_json(), "state": t.state,
                 "launched": t.launched}
                for t in executor.tasks.values()
            ],
        }  # fmt: skip
        recovery.checkpoint(self._checkpoint_folder(executor), record)

    def recover(self) -> int:
        """A restarted agent (its id known): take back the checkpointed executors whose
        processes still run, kill the other processes left in its sandboxes; return how
        many executors await re-subscription. Call with the lock held, before
        registering."""
        now = time.time()
        waiting = 0
        keep: set[int] = set()
        for record in recovery.load(self.config.work_dir, self.agent_id):
            framework_id, executor_id = record["framework_id"], record["executor_id"]
            executor = _Executor(
                framework_id=framework_id,
                executor_id=executor_id,
                info=record["info"],
                framework_info=record["framework_info"],
                container_id=record["container_id"],
                directory=Path(record["directory"]),
                resources=Resources.from_json(record["resources"]),
                grace_s=float(record["grace_s"]),
                recovered=True,
            )
            for item in record["tasks"]:
                task = _Task(item["info"], Resources.from_json(item["resources"]),
                             item["state"], bool(item["launched"]))  # fmt: skip
                executor.tasks[item["info"]["task_id"]["value"]] = task
            container = recovery.RecoveredContainer(int(record["pid"]))
            executor.container = container
            self._executors[(framework_id, executor_id)] = executor
            self._frameworks.setdefault(framework_id, _FrameworkRecord(record["framework_info"]))
            if recovery.alive(container.pid):
                keep.add(container.pid)
                executor.registration_deadline = now + self.config.executor_reregistration_timeout_s
                waiting += 1
                logger.info("recovering executor %s (pid %d)", executor_id, container.pid)
            thread = threading.Thread(
                target=self._watch_recovered, args=(executor, container),
                name=f"ancho-embedded-executor-{executor_id}", daemon=True,
            )  # fmt: skip
            executor.thread = thread
            self._threads.append(thread)
            thread.start()
        for pgid in recovery.kill_orphans(self.config.work_dir / "slaves", keep):
            logger.info("killed process group %d left by the agent's earlier run", pgid)
        return waiting

    def recovering(self, now: float) -> bool:
        """Whether recovered executors may still re-subscribe (Mesos registers with the
        master only after that, MESOS-7539; here as soon as they all did)."""
        return any(
            e.recovered and e.state == "LAUNCHING" and e.registration_deadline > now
            for e in self._executors.values()
        )

    def _watch_recovered(self, executor: _Executor, container: Container) -> None:
        status = container.wait()
        with self.lock:
            message = f"Executor terminated (wait status {status})"
            self._terminated(executor, status, "REASON_EXECUTOR_TERMINATED", message)

    # -------------------------------------------------------------- containers
    def _run_container(self, executor: _Executor, spec: ContainerSpec, runs: Path) -> None:
        container: Container | None = None
        try:
            uris = spec.command.get("uris") or []
            if uris:
                # As Mesos' fetcher: CommandInfo.user, else FrameworkInfo.user.
                user = spec.command.get("user") or spec.user
                try:
                    self.fetcher.fetch(
                        uris, spec.directory, user=user, cancelled=executor.cancel.is_set
                    )
                except FetchError as exc:
                    raise LaunchError(
                        f"Failed to fetch all URIs for container '{spec.container_id}': {exc}"
                    ) from None
            if not executor.cancel.is_set():
                container = self.containerizer.launch(spec)
        except LaunchError as exc:
            logger.warning("executor %s failed to launch: %s", executor.executor_id, exc)
            with self.lock:
                self._terminated(
                    executor, -1, "REASON_CONTAINER_LAUNCH_FAILED",
                    f"Failed to launch container: {exc}",
                )  # fmt: skip
            return
        if container is None:  # destroyed before it started
            with self.lock:
                self._terminated(
                    executor, -1, "REASON_EXECUTOR_TERMINATED",
                    "Executor terminated before its container started",
                )  # fmt: skip
            return
        try:
            latest = runs / "latest"
            latest.unlink(missing_ok=True)
            latest.symlink_to(spec.container_id)
        except OSError:
            pass  # the symlink is a convenience, like Mesos' 'latest'
        with self.lock:
            executor.container = container
            self._checkpoint(executor)
            if self._stopping:
                container.signal(signal.SIGKILL)
            else:
                self._escalate(executor, time.time())
        status = container.wait()
        with self.lock:
            message = f"Executor terminated (wait status {status})"
            self._terminated(executor, status, "REASON_EXECUTOR_TERMINATED", message)

    def _terminated(self, executor: _Executor, status: int, reason: str, message: str) -> None:
        state = "TASK_FAILED"
        if executor.pending is not None:
            state, reason, message = executor.pending
        recovery.forget(self._checkpoint_folder(executor))
        executor.state = "TERMINATED"
        if executor.stream is not None:
            executor.stream.close()
            executor.stream = None
        key = (executor.framework_id, executor.executor_id)
        if self._executors.get(key) is executor:
            del self._executors[key]
        self._completed(executor)
        if self._stopping or executor.silent:
            return
        logger.info("executor %s terminated: %s", executor.executor_id, message)
        for task_id, task in list(executor.tasks.items()):
            if task.state not in TERMINAL_STATES:
                self._task_update(executor, task_id, state, reason, message)
        self.master.executor_terminated(executor.framework_id, executor.executor_id, status)

    def _completed(self, executor: _Executor) -> None:
        """Remember a terminated executor; a framework left without any is completed."""
        framework_id = executor.framework_id
        record = self._frameworks.get(framework_id)
        if record is None:
            return
        record.completed_executors.append(executor)
        if not any(e.framework_id == framework_id for e in self._executors.values()):
            del self._frameworks[framework_id]
            self._completed_frameworks.append((framework_id, record))

    def _escalate(self, executor: _Executor, now: float) -> None:
        container = executor.container
        if container is None:
            return  # still launching: _run_container escalates once it has a process
        if executor.sigkill_at is not None and executor.sigkill_at <= now:
            container.signal(signal.SIGKILL)
            executor.sigkill_at = None
            executor.sigterm_at = None
        elif executor.sigterm_at is not None and executor.sigterm_at <= now:
            container.signal(signal.SIGTERM)
            executor.sigterm_at = None

    def tick(self, now: float) -> None:
        """Periodic work: update retries, executor heartbeats, registration timeouts,
        shutdown escalation."""
        self.updates.tick(now)
        for executor in self._executors.values():
            if executor.state == "LAUNCHING" and executor.registration_deadline <= now:
                self._registration_timed_out(executor, now)
            self._escalate(executor, now)
            if executor.stream is not None and executor.next_heartbeat <= now:
                executor.stream.send(event("HEARTBEAT"))
                executor.next_heartbeat = now + self.config.executor_heartbeat_interval_s

    def _registration_timed_out(self, executor: _Executor, now: float) -> None:
        """Mesos' registerExecutorTimeout: destroy the container at once; its tasks fail
        with REASON_EXECUTOR_REGISTRATION_TIMEOUT when it is gone."""
        timeout = _duration(self.config.executor_registration_timeout_s)
        logger.info(
            "terminating executor %s: it did not register within %s",
            executor.executor_id,
            timeout,
        )
        executor.state = "TERMINATING"
        if executor.recovered:
            # Mesos' reregisterExecutorTimeout.
            timeout = _duration(self.config.executor_reregistration_timeout_s)
            executor.pending = (
                "TASK_GONE" if _partition_aware(executor) else "TASK_LOST",
                "REASON_EXECUTOR_REREGISTRATION_TIMEOUT",
                f"Executor did not reregister within {timeout}",
            )
        else:
            executor.pending = (
                "TASK_FAILED",
                "REASON_EXECUTOR_REGISTRATION_TIMEOUT",
                f"Executor did not register within {timeout}",
            )
        executor.cancel.set()
        executor.sigterm_at = None
        executor.sigkill_at = now

    # ---------------------------------------------------------- state endpoint
    def state_route(self, request: Request) -> Response:
        """Route for the agent's ``/state`` (``/slave(1)/state``): Mesos 1.11's JSON."""
        with self.lock:
            body = json.dumps(self.state())
        return Response(200, body.encode(), "application/json")

    def state(self) -> JSON:
        """The agent's state as its ``/state`` shows it (call with the lock held)."""
        host = self.config.host
        grace = self.config.executor_shutdown_grace_s
        return {
            "version": MESOS_VERSION,
            "build_date": "",
            "build_time": 0,
            "build_user": "ancho",
            "start_time": self.start_time,
            "id": self.agent_id,
            "pid": f"slave(1)@{self.endpoint}",
            "hostname": host,
            "capabilities": [],
            "resources": resources_object(self.total),
            "reserved_resources": {},
            "unreserved_resources": resources_object(self.total),
            "reserved_resources_full": {},
            "unreserved_resources_full": self.total.to_json(),
            "reserved_resources_allocated": {},
            "unreserved_resources_allocated": resources_object(self.used_resources()),
            "resource_providers": [],
            "attributes": {},
            "master_hostname": self.master_hostname,
            "flags": {
                "authenticate_http_executors": "false",
                "authenticate_http_readonly": "false",
                "executor_registration_timeout": _duration(
                    self.config.executor_registration_timeout_s
                ),
                "executor_shutdown_grace_period": _duration(grace),
                "fetcher_cache_dir": str(self.fetcher.cache_dir),
                "hostname": host,
                "ip": host,
                "port": str(self.config.port),
                "work_dir": str(self.config.work_dir),
            },
            "frameworks": [
                self._framework_state(framework_id, record)
                for framework_id, record in self._frameworks.items()
            ],
            "completed_frameworks": [
                self._framework_state(framework_id, record)
                for framework_id, record in self._completed_frameworks
            ],
        }

    def _framework_state(self, framework_id: str, record: _FrameworkRecord) -> JSON:
        live = [e for e in self._executors.values() if e.framework_id == framework_id]
        return {
            "id": framework_id,
            "name": record.info.get("name", ""),
            **framework_info_fields(record.info),
            "executors": [self._executor_state(e) for e in live],
            "completed_executors": [self._executor_state(e) for e in record.completed_executors],
        }

    def _executor_state(self, executor: _Executor) -> JSON:
        info = executor.info
        state: JSON = {
            "id": executor.executor_id,
            "name": info.get("name", ""),
            "source": info.get("source", ""),
            "container": executor.container_id,
            "directory": str(executor.directory),
            "resources": resources_object(_allocated(executor)),
        }
        if info.get("resources"):
            state["role"] = "*"
        if isinstance(info.get("labels"), dict):
            state["labels"] = list(info["labels"].get("labels", []))
        if "type" in info:
            state["type"] = info["type"]
        tasks = executor.tasks.values()
        state["tasks"] = [
            self._task_state(executor, t)
            for t in tasks
            if t.launched and t.state not in TERMINAL_STATES
        ]
        state["queued_tasks"] = [
            task_info_json(t.info, self.agent_id)
            for t in tasks
            if not t.launched and t.state not in TERMINAL_STATES
        ]
        done = [t for t in executor.completed_tasks]
        done += [t for t in tasks if t.state in TERMINAL_STATES]
        state["completed_tasks"] = [self._task_state(executor, t) for t in done]
        return state

    def _task_state(self, executor: _Executor, task: _Task) -> JSON:
        return task_json(task.info, framework_id=executor.framework_id, agent_id=self.agent_id,
                         state=task.state, resources=task.resources,
                         statuses=task.statuses)  # fmt: skip

    def stop(self) -> list[threading.Thread]:
        """Kill every executor's process group now; return the threads to join."""
        self._stopping = True
        for executor in self._executors.values():
            executor.cancel.set()
            if executor.stream is not None:
                executor.stream.close()
            if executor.container is not None:
                executor.container.signal(signal.SIGKILL)
        return list(self._threads)


class _NoMaster:
    """The link of an agent not registered yet: what it would tell a master is dropped
    (status updates stay queued and are re-sent once it registers)."""

    def task_state_changed(self, framework_id: str, task_id: str, status: JSON) -> None:
        pass

    def forward_update(self, framework_id: str, status: JSON) -> None:
        pass

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None:
        pass

    def executor_terminated(self, framework_id: str, executor_id: str, status: int) -> None:
        pass


def _allocated(executor: _Executor) -> Resources:
    """The executor's own resources and those of its live tasks."""
    used = executor.resources
    for task in executor.tasks.values():
        if task.state not in TERMINAL_STATES:
            used = used + task.resources
    return used


def _validate_update(call: JSON, framework_id: str, executor_id: str) -> None:
    """Mesos' validateExecutorCall for UPDATE (common/validation.cpp): 400 otherwise."""
    prefix = "Failed to validate Executor::Call: "
    update = call.get("update")
    if not isinstance(update, dict):
        raise CallError(400, prefix + "Expecting 'update' to be present")
    status = update.get("status")
    if not isinstance(status, dict):
        return  # a missing status is a malformed call, reported by _update
    raw = status.get("uuid")
    if not isinstance(raw, str) or not raw:
        raise CallError(400, prefix + "Expecting 'uuid' to be present")
    if not is_uuid(raw):
        raise CallError(400, prefix + "Not a valid UUID")
    named = status.get("executor_id")
    if isinstance(named, dict) and named.get("value") != executor_id:
        raise CallError(
            400,
            f"{prefix}ExecutorID in Call: {executor_id} does not match ExecutorID in"
            f" TaskStatus: {named.get('value')}",
        )
    if status.get("source") != "SOURCE_EXECUTOR":
        raise CallError(
            400,
            f"{prefix}Received Call from executor {executor_id} of framework {framework_id}"
            " with invalid source, expecting 'SOURCE_EXECUTOR'",
        )
    if status.get("state") == "TASK_STAGING":
        raise CallError(
            400,
            f"{prefix}Received TASK_STAGING from executor {executor_id} of framework"
            f" {framework_id} which is not allowed",
        )


def _partition_aware(executor: _Executor) -> bool:
    """Whether the executor's framework has the PARTITION_AWARE capability."""
    capabilities = executor.framework_info.get("capabilities", [])
    return any(c.get("type") == "PARTITION_AWARE" for c in capabilities)
