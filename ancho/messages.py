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

__all__ = ["Credential", "CredentialRefused", "CredentialRequest", "Message", "Stop", "decode"]


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
