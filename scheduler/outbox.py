"""Commands that could not be carried out, kept until they are (no I/O here).

The edge reports a command it could not carry out as a ``CommandFailed`` event; for a
store write or a task kill, the state machine keeps it here and sends it again with
backoff. Order is kept where it matters, because a retried write must never undo a
newer one:

- ``UpdateRun``: the unsaved fields of a run are merged in the order they were meant
  (newer over older), and the next update of that run carries them along;
- ``SaveBatch``/``ForgetBatch``: per batch key, the newest command wins;
- ``PutLive``: per run, the newest; ``KillTask``: per task;
- ``Log``/``WriteFailed``: every one, in order.

A run's writes that have failed for longer than ``give_up_s`` make :meth:`stuck` name
that run, and the state machine ends it FAILED with the store's error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .events import Command, ForgetBatch, KillTask, Log, PutLive, SaveBatch, UpdateRun, WriteFailed

#: Commands that write to the store (the edge keeps their order when one fails).
STORE_WRITES = (UpdateRun, SaveBatch, ForgetBatch, PutLive, Log, WriteFailed)


@dataclass(slots=True)
class _Pending:
    command: Command
    since: float
    error: str


@dataclass(slots=True)
class Outbox:
    """Failed commands by the key that decides which one supersedes which."""

    retry_s: float = 0.5
    retry_max_s: float = 10.0
    give_up_s: float = 300.0
    pending: dict[tuple[Any, ...], _Pending] = field(default_factory=dict)
    #: Keys sent again at the last retry, with when they first failed: one that has not
    #: failed again by the next tick went through (the edge reports failures at once).
    _retried: dict[tuple[Any, ...], float] = field(default_factory=dict)
    _delay: float = 0.0
    _due: float = 0.0

    def outgoing(self, command: Command) -> Command:
        """The command to send now in place of ``command``: an UpdateRun carries the run's
        unsaved fields along; any command supersedes the pending one of its key."""
        key = self._key(command)
        if key is None:
            return command
        old = self.pending.pop(key, None)
        if isinstance(command, UpdateRun) and old is not None:
            assert isinstance(old.command, UpdateRun)
            return UpdateRun(command.run_id, {**old.command.fields, **command.fields})
        return command

    def failed(self, command: Command, error: str, now: float) -> bool:
        """Keep a failed command for later; False when it is not worth retrying."""
        key = self._key(command)
        if key is None:
            return False
        old = self.pending.get(key)
        since = old.since if old is not None else self._retried.pop(key, now)
        if isinstance(command, UpdateRun) and old is not None:
            assert isinstance(old.command, UpdateRun)
            command = UpdateRun(command.run_id, {**old.command.fields, **command.fields})
        self.pending[key] = _Pending(command, since, error)
        if self._delay == 0.0:
            self._delay = self.retry_s
            self._due = now + self._delay
        return True

    def due(self, now: float) -> list[Command]:
        """The commands to try again now (all of them, oldest first, when due): each
        either succeeds or fails again and comes back."""
        self._retried.clear()
        if not self.pending:
            self._delay = 0.0  # everything went through: the next failure starts anew
            return []
        if now < self._due:
            return []
        self._delay = min(self._delay * 2, self.retry_max_s)
        self._due = now + self._delay
        self._retried = {k: p.since for k, p in self.pending.items()}
        retry = [p.command for p in self.pending.values()]
        self.pending.clear()
        return retry

    def stuck(self, now: float) -> dict[str, str]:
        """Runs whose writes have failed for longer than ``give_up_s``: run id -> error."""
        out: dict[str, str] = {}
        for p in self.pending.values():
            run_id = getattr(p.command, "run_id", None)
            if run_id and now - p.since > self.give_up_s:
                out.setdefault(run_id, p.error)
        return out

    def drop_run(self, run_id: str) -> None:
        """Forget a run's pending commands (the run ended and nothing of it is wanted)."""
        for key, p in list(self.pending.items()):
            if getattr(p.command, "run_id", None) == run_id:
                del self.pending[key]

    @staticmethod
    def _key(command: Command) -> tuple[Any, ...] | None:
        match command:
            case UpdateRun():
                return ("run", command.run_id)
            case SaveBatch() | ForgetBatch():
                return ("batch", command.run_id, command.key)
            case PutLive():
                return ("live", command.run_id)
            case KillTask():
                return ("kill", command.task_id)
            case Log() | WriteFailed():
                return ("each", id(command))  # the same object comes back when retried
        return None
