"""Task reconciliation as Mesos' reconciliation guide describes it, without I/O.

After every (re-)subscription, and for every task reported TASK_UNREACHABLE, the
scheduler asks the master explicitly about the tasks it believes in flight (with their
agent ids, so that a master that is still recovering an agent answers when it knows).
The question is repeated with exponential backoff until each of those tasks has had a
status update that is not TASK_UNREACHABLE. Once none is left, an implicit
reconciliation (all tasks, no list) runs every ``implicit_s``: the master then reports
tasks the scheduler has forgotten, which the state machine kills.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .events import Reconcile


@dataclass(slots=True)
class Reconciliation:
    """Which tasks still wait for an answer, and when to ask again."""

    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    implicit_s: float = 300.0
    #: task id -> agent id (empty when unknown), for tasks not answered yet.
    waiting: dict[str, str] = field(default_factory=dict)
    _delay: float = 0.0
    _due: float = 0.0
    _next_implicit: float | None = None

    def ask(self, tasks: dict[str, str], now: float) -> Reconcile | None:
        """Start (or widen) an explicit reconciliation of ``tasks``; the Reconcile to
        send now, or None when these tasks are already being asked about."""
        new = {t: a for t, a in tasks.items() if t not in self.waiting}
        if not new:
            return None
        restart = not self.waiting
        self.waiting.update(new)
        if restart:
            self._delay = self.backoff_s
        self._due = now + self._delay
        return Reconcile(tuple(sorted(new.items())))

    def answered(self, task_id: str, state: str) -> None:
        """A status update for the task came in (an unreachable task is not answered:
        the question stands until its agent comes back or is gone)."""
        if state != "TASK_UNREACHABLE":
            self.waiting.pop(task_id, None)

    def forget(self, task_id: str) -> None:
        """The scheduler no longer cares about the task."""
        self.waiting.pop(task_id, None)

    def tick(self, now: float) -> Reconcile | None:
        """Ask again (backing off) while tasks are unanswered; otherwise the periodic
        implicit reconciliation."""
        if self.waiting:
            if now < self._due:
                return None
            self._delay = min(self._delay * 2, self.backoff_max_s)
            self._due = now + self._delay
            self._next_implicit = None
            return Reconcile(tuple(sorted(self.waiting.items())))
        if self._next_implicit is None:
            self._next_implicit = now + self.implicit_s
            return None
        if now < self._next_implicit:
            return None
        self._next_implicit = now + self.implicit_s
        return Reconcile(())
