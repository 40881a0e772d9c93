"""What the master knows of each framework: its stream, tasks, offers and filters.

Plain records: the master, the allocator and task validation read and change them
under the cluster lock; none of them does any I/O except :meth:`Framework.send`,
which only queues an event on the framework's stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .http import EventStream
from .protocol import JSON
from .resources import Resources

__all__ = ["Framework", "OfferFilter", "Task"]


@dataclass(slots=True)
class OfferFilter:
    """Resources a framework refused (DECLINE, or unused in ACCEPT) until ``expires``."""

    resources: Resources
    expires: float


@dataclass(slots=True)
class Task:
    """The master's view of a task: which executor runs it and its latest state."""

    task_id: str
    executor_id: str | None
    state: str


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

    @property
    def partition_aware(self) -> bool:
        """Whether FrameworkInfo declares the PARTITION_AWARE capability."""
        return any(c.get("type") == "PARTITION_AWARE" for c in self.info.get("capabilities", []))

    def send(self, message: JSON) -> None:
        """Queue an event for the scheduler; dropped while it is disconnected."""
        if self.stream is not None:
            self.stream.send(message)
