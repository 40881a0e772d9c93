"""What the master knows of each framework: its stream, tasks, offers and filters.

Plain records: the master, the allocator and task validation read and change them
under the cluster lock; none of them does any I/O except :meth:`Framework.send`,
which only queues an event on the framework's stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .http import EventStream
from .protocol import JSON
from .resources import Resources

__all__ = ["Framework", "OfferFilter", "Task"]

#: Mesos' defaults of --max_completed_tasks_per_framework and --max_completed_frameworks.
MAX_COMPLETED_TASKS = 1000
MAX_COMPLETED_FRAMEWORKS = 50


@dataclass(slots=True)
class OfferFilter:
    """Resources a framework refused (DECLINE, or unused in ACCEPT) until ``expires``."""

    resources: Resources
    expires: float
    agent_id: str = ""  # filters refuse resources of one agent, as in Mesos


@dataclass(slots=True)
class Task:
    """The master's view of a task: which executor runs it, its latest state and (for the
    state endpoint) its TaskInfo, resources and the statuses it went through."""

    task_id: str
    executor_id: str | None
    state: str
    info: JSON = field(default_factory=dict)
    agent_id: str = ""
    resources: Resources = field(default_factory=Resources)
    statuses: list[JSON] = field(default_factory=list)
    #: The state of each update forwarded to the scheduler and not yet acknowledged.
    unacked: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Framework:
    """A subscribed (or disconnected but not yet removed) framework."""

    framework_id: str
    info: JSON
    # None while disconnected: events are dropped until the framework re-subscribes.
    stream: EventStream | None = None
    failover_deadline: float | None = None
    suppressed: bool = False
    filters: list[OfferFilter] = field(default_factory=list)
    tasks: dict[str, Task] = field(default_factory=dict)
    offers: set[str] = field(default_factory=set)
    next_heartbeat: float = 0.0
    registered_time: float = 0.0
    reregistered_time: float = 0.0
    unregistered_time: float = 0.0
    #: Tasks whose terminal update was acknowledged (the newest ones).
    completed_tasks: deque[Task] = field(default_factory=lambda: deque(maxlen=MAX_COMPLETED_TASKS))

    def declares(self, capability: str) -> bool:
        """Whether FrameworkInfo declares ``capability`` (``"PARTITION_AWARE"``, …)."""
        return any(c.get("type") == capability for c in self.info.get("capabilities", []))

    @property
    def partition_aware(self) -> bool:
        """Whether FrameworkInfo declares the PARTITION_AWARE capability."""
        return self.declares("PARTITION_AWARE")

    def send(self, message: JSON) -> None:
        """Queue an event for the scheduler; dropped while it is disconnected."""
        if self.stream is not None:
            self.stream.send(message)
