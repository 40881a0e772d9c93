"""The master's record of each registered agent, and the links between master and agents.

As in Mesos, the master keeps its own account of every agent: its AgentInfo and total
resources, the executors it launched there and the live tasks they run. Allocation,
task validation and ``/master/state`` read that account, never the agent itself, so
they work the same whether the agent is an object in this process (``ancho run``'s
single node) or a process elsewhere (``ancho cluster``).

Commands go to an agent through an :class:`AgentLink` and come back through a
:class:`MasterLink`. The local links below are plain calls; ``remote.py`` has the
ones that carry the same calls as JSON over HTTP between processes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .frameworks import Task
from .protocol import JSON, MESOS_VERSION, TERMINAL_STATES
from .resources import Resources
from .state import resources_object

if TYPE_CHECKING:
    from .agent import Agent
    from .master import Master

__all__ = ["AgentLink", "AgentRecord", "ExecutorRecord", "LocalAgentLink", "LocalMasterLink"]


class AgentLink(Protocol):
    """What the master tells an agent (fire and forget, as libprocess messages are)."""

    def launch_task(
        self,
        framework_info: JSON,
        executor_info: JSON,
        task_info: JSON,
        task_resources: Resources,
        executor_resources: Resources,
    ) -> None: ...

    def kill_task(self, framework_id: str, task_id: str) -> None: ...

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None: ...

    def acknowledge(self, framework_id: str, task_id: str, uuid: str) -> None: ...

    def message_to_executor(self, framework_id: str, executor_id: str, data: str) -> None: ...

    def shutdown_framework(self, framework_id: str) -> None: ...

    def resend_updates(self, framework_id: str) -> None: ...


class MasterLink(Protocol):
    """What an agent tells the master."""

    def task_state_changed(self, framework_id: str, task_id: str, status: JSON) -> None:
        """The agent learnt a task's new latest state (``status``, an update)."""
        ...

    def forward_update(self, framework_id: str, status: JSON) -> None:
        """Deliver a status update (in order, retried until acknowledged) to the scheduler."""
        ...

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None: ...

    def executor_terminated(self, framework_id: str, executor_id: str, status: int) -> None: ...


@dataclass(slots=True)
class ExecutorRecord:
    """An executor the master launched on an agent."""

    framework_id: str
    executor_id: str
    info: JSON  # as the agent runs it: with framework_id
    resources: Resources


@dataclass(slots=True)
class AgentRecord:
    """The master's account of one registered agent."""

    agent_id: str
    hostname: str
    port: int
    total: Resources
    link: AgentLink
    registered_time: float = field(default_factory=time.time)
    reregistered_time: float | None = None
    executors: dict[tuple[str, str], ExecutorRecord] = field(default_factory=dict)
    #: Live (non-terminal) tasks on the agent, the master's Task objects.
    tasks: dict[tuple[str, str], Task] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"{self.hostname}:{self.port}"

    # ----------------------------------------------------------- bookkeeping
    def task_launched(self, framework_id: str, task: Task, executor: ExecutorRecord) -> None:
        key = (framework_id, executor.executor_id)
        self.executors.setdefault(key, executor)
        self.tasks[(framework_id, task.task_id)] = task

    def task_state(self, framework_id: str, task_id: str, state: str) -> None:
        if state in TERMINAL_STATES:
            self.tasks.pop((framework_id, task_id), None)

    def executor_gone(self, framework_id: str, executor_id: str) -> None:
        self.executors.pop((framework_id, executor_id), None)

    def drop_framework(self, framework_id: str) -> None:
        """A removed framework holds nothing here any more (its executors are shut down)."""
        for key in [k for k in self.executors if k[0] == framework_id]:
            del self.executors[key]
        for key in [k for k in self.tasks if k[0] == framework_id]:
            del self.tasks[key]

    # --------------------------------------------------------------- queries
    def used_resources(self) -> Resources:
        """Resources held by live executors and their non-terminal tasks."""
        used = Resources()
        for executor in self.executors.values():
            used = used + executor.resources
        for task in self.tasks.values():
            used = used + task.resources
        return used

    def framework_resources(self, framework_id: str) -> Resources:
        """What a framework's executors and live tasks hold here."""
        used = Resources()
        for (fid, _), executor in self.executors.items():
            if fid == framework_id:
                used = used + executor.resources
        for (fid, _), task in self.tasks.items():
            if fid == framework_id:
                used = used + task.resources
        return used

    def framework_cpus(self, framework_id: str) -> float:
        """Cpus a framework holds here (for fair allocation)."""
        return self.framework_resources(framework_id).scalar("cpus")

    def executor_ids(self, framework_id: str) -> list[str]:
        """Ids of a framework's live executors here."""
        return [eid for (fid, eid) in self.executors if fid == framework_id]

    def executor_info(self, framework_id: str, executor_id: str) -> JSON | None:
        """The ExecutorInfo of a live executor (None when there is none)."""
        executor = self.executors.get((framework_id, executor_id))
        return executor.info if executor is not None else None

    def executor_infos(self, framework_id: str) -> list[JSON]:
        """The ExecutorInfos of a framework's live executors here."""
        return [e.info for (fid, _), e in self.executors.items() if fid == framework_id]

    def summary(self, offered: Resources) -> JSON:
        """The agent as ``/master/state`` lists it in ``slaves``."""
        summary: JSON = {
            "id": self.agent_id,
            "hostname": self.hostname,
            "port": self.port,
            "attributes": {},
            "pid": f"slave(1)@{self.endpoint}",
            "registered_time": self.registered_time,
            "resources": resources_object(self.total),
            "used_resources": resources_object(self.used_resources()),
            "offered_resources": resources_object(offered),
            "reserved_resources": {},
            "unreserved_resources": resources_object(self.total),
            "active": True,
            "deactivated": False,
            "version": MESOS_VERSION,
            "capabilities": [],
        }
        if self.reregistered_time is not None:
            summary["reregistered_time"] = self.reregistered_time
        return summary


class LocalAgentLink:
    """The master's link to an agent in the same process: direct calls."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def launch_task(
        self,
        framework_info: JSON,
        executor_info: JSON,
        task_info: JSON,
        task_resources: Resources,
        executor_resources: Resources,
    ) -> None:
        self._agent.launch_task(
            framework_info, executor_info, task_info, task_resources, executor_resources
        )

    def kill_task(self, framework_id: str, task_id: str) -> None:
        self._agent.kill_task(framework_id, task_id)

    def shutdown_executor(self, framework_id: str, executor_id: str) -> None:
        self._agent.shutdown_executor(framework_id, executor_id)

    def acknowledge(self, framework_id: str, task_id: str, uuid: str) -> None:
        self._agent.acknowledge(framework_id, task_id, uuid)

    def message_to_executor(self, framework_id: str, executor_id: str, data: str) -> None:
        self._agent.message_to_executor(framework_id, executor_id, data)

    def shutdown_framework(self, framework_id: str) -> None:
        self._agent.shutdown_framework(framework_id)

    def resend_updates(self, framework_id: str) -> None:
        self._agent.updates.resend(framework_id, time.time())


class LocalMasterLink:
    """An in-process agent's link to its master: direct calls naming the agent."""

    def __init__(self, master: Master, agent_id: str) -> None:
        self._master = master
        self._agent_id = agent_id

    def task_state_changed(self, framework_id: str, task_id: str, status: JSON) -> None:
        self._master.task_state_changed(self._agent_id, framework_id, task_id, status)

    def forward_update(self, framework_id: str, status: JSON) -> None:
        self._master.forward_update(self._agent_id, framework_id, status)

    def executor_message(self, framework_id: str, executor_id: str, data: str) -> None:
        self._master.executor_message(self._agent_id, framework_id, executor_id, data)

    def executor_terminated(self, framework_id: str, executor_id: str, status: int) -> None:
        self._master.executor_terminated(self._agent_id, framework_id, executor_id, status)
