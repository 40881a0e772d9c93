"""The agent's status update manager: reliable, ordered delivery of task updates.

Each task has its own queue; only the head update is in flight. It is re-sent every
``retry_s`` until the scheduler acknowledges its uuid, then the next one goes out.
Mesos backs off exponentially from 10 s; a fixed interval is simpler and keeps tests
fast. All methods are called with the cluster lock held.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from .protocol import JSON

__all__ = ["StatusUpdateManager"]

logger = logging.getLogger("ancho.embedded.updates")

_Key = tuple[str, str]  # (framework id, task id)


class StatusUpdateManager:
    """Queues of unacknowledged updates, per task, with retries."""

    def __init__(self, retry_s: float, forward: Callable[[str, JSON], None]) -> None:
        self._retry_s = retry_s
        self._forward = forward
        self._queues: dict[_Key, deque[JSON]] = {}
        self._retry_at: dict[_Key, float] = {}

    def add(self, framework_id: str, status: JSON, now: float) -> None:
        """Queue ``status`` (it must carry a uuid); send it at once if its queue was idle."""
        key = (framework_id, status["task_id"]["value"])
        queue = self._queues.setdefault(key, deque())
        queue.append(status)
        if len(queue) == 1:
            self._send(key, now)

    def acknowledge(self, framework_id: str, task_id: str, uuid: str, now: float) -> JSON | None:
        """Retire the in-flight update if ``uuid`` is its uuid; return it, else None."""
        key = (framework_id, task_id)
        queue = self._queues.get(key)
        if not queue or queue[0].get("uuid") != uuid:
            logger.debug("ignoring unexpected acknowledgement %s for task %s", uuid, task_id)
            return None
        acked = queue.popleft()
        if queue:
            self._send(key, now)
        else:
            del self._queues[key]
            self._retry_at.pop(key, None)
        return acked

    def resend(self, framework_id: str, now: float) -> None:
        """Send every in-flight update of a framework again (it has just re-subscribed)."""
        for key in [k for k in self._queues if k[0] == framework_id]:
            self._send(key, now)

    def drop_framework(self, framework_id: str) -> None:
        """Forget a removed framework's updates: nobody is left to acknowledge them."""
        for key in [k for k in self._queues if k[0] == framework_id]:
            del self._queues[key]
            self._retry_at.pop(key, None)

    def unacknowledged(self, framework_id: str, task_id: str) -> bool:
        """Whether an update of the task waits for its acknowledgement."""
        return (framework_id, task_id) in self._queues

    def pending(self, framework_id: str) -> int:
        """Number of unacknowledged updates of a framework."""
        return sum(len(q) for k, q in self._queues.items() if k[0] == framework_id)

    def tick(self, now: float) -> None:
        """Re-send the in-flight updates whose retry time has come."""
        for key, when in list(self._retry_at.items()):
            if when <= now:
                self._send(key, now)

    def _send(self, key: _Key, now: float) -> None:
        self._retry_at[key] = now + self._retry_s
        self._forward(key[0], self._queues[key][0])
