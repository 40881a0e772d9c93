"""Framework messages between the scheduler and its executors, each defined once.

Mesos carries them as opaque bytes (``sendFrameworkMessage``), best effort: a message
may be lost, so whoever needs an answer asks again. They appear in no Mesos state
endpoint, which is why the store credential travels this way and not in the
ExecutorInfo. On the wire a message is one JSON object whose ``op`` names its type;
decoding is JSON only, and anything unexpected is a :class:`ValueError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, cast

__all__ = [
    "BatchReport",
    "Credential",
    "CredentialRefused",
    "CredentialRequest",
    "Message",
    "Stop",
    "decode",
]


class _Message:
    """What every message has: its ``op``, ``to_dict``/``from_dict`` and ``encode``."""

    __slots__ = ()
    op: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The message as a JSON object, ``op`` first."""
        return {"op": self.op, **{f.name: getattr(self, f.name) for f in fields(cast(Any, self))}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """The message of this type ``data`` describes; ValueError when it is not one."""
        names = [f.name for f in fields(cast(Any, cls))]
        if data.get("op") != cls.op or set(data) - {"op"} != set(names):
            raise ValueError(f"framework message {cls.op!r} has exactly the fields {names}")
        values = [data[n] for n in names]
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"framework message {cls.op!r}: every field is a string")
        return cls(*values)

    def encode(self) -> bytes:
        """The bytes to hand to ``sendFrameworkMessage`` (pymesos base64s them)."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(slots=True, frozen=True)
class Stop(_Message):
    """Scheduler → executor: the run needs this executor no more (it exits, a batch it
    still runs ending at its next sequence)."""

    op: ClassVar[str] = "stop"


@dataclass(slots=True, frozen=True)
class CredentialRequest(_Message):
    """Executor → scheduler: the store credential of run ``run_id``, please."""

    run_id: str
    op: ClassVar[str] = "credential_request"


@dataclass(slots=True, frozen=True)
class Credential(_Message):
    """Scheduler → executor: the run's store URL, carrying the run's own short-lived role."""

    run_id: str
    store: str = field(repr=False)  # a secret: never in a log line or a traceback
    op: ClassVar[str] = "credential"


@dataclass(slots=True, frozen=True)
class CredentialRefused(_Message):
    """Scheduler → executor: no credential for run ``run_id``, and why."""

    run_id: str
    reason: str
    op: ClassVar[str] = "credential_refused"


Message = Stop | CredentialRequest | Credential | CredentialRefused
_TYPES: dict[str, type[Message]] = {
    t.op: t for t in (Stop, CredentialRequest, Credential, CredentialRefused)
}


def decode(raw: bytes) -> Message:
    """The message in ``raw`` (bytes after base64); ValueError when it is not one."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"not a framework message: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("op"), str):
        raise ValueError("a framework message is a JSON object with a string 'op'")
    kind = _TYPES.get(data["op"])
    if kind is None:
        raise ValueError(f"unknown framework message {data['op']!r}")
    message: Message = kind.from_dict(data)
    return message


@dataclass(slots=True)
class BatchReport:
    """Executor → scheduler, as the data of a batch task's status update (not a framework
    message: it rides on the update, which Mesos delivers reliably): how far the batch
    got and what it stored. ``next`` is the first sequence not yet stored; ``elapsed``
    the batch's seconds (when it finished); ``fatal`` says the model cannot run at all
    (no retry), with ``error``; ``partials`` the partial statistics of the blocks
    completed since the last report, by block (as ``ancho.partials`` writes them)."""

    next: int
    ok: int = 0
    failed: int = 0
    elapsed: float | None = None
    fatal: bool = False
    error: str | None = None
    partials: dict[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """The JSON object sent: counts always, the rest only when set."""
        data: dict[str, Any] = {"next": self.next, "ok": self.ok, "failed": self.failed}
        if self.elapsed is not None:
            data["elapsed"] = self.elapsed
        if self.fatal:
            data["fatal"] = True
        if self.error is not None:
            data["error"] = self.error
        if self.partials:
            data["partials"] = self.partials
        return data

    @classmethod
    def from_data(cls, data: Any) -> BatchReport | None:
        """The report in a status update's data; None when there is none, or it is not
        one (an executor's bad data moves nothing)."""
        if not isinstance(data, dict) or not _count(data.get("next")):
            return None
        elapsed, error, partials = data.get("elapsed"), data.get("error"), data.get("partials")
        return cls(
            next=data["next"],
            ok=data["ok"] if _count(data.get("ok")) else 0,
            failed=data["failed"] if _count(data.get("failed")) else 0,
            elapsed=float(elapsed) if isinstance(elapsed, int | float) else None,
            fatal=data.get("fatal") is True,
            error=error if isinstance(error, str) else None,
            partials=partials if isinstance(partials, dict) else {},
        )


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
