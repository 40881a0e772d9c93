"""One error hierarchy for everything a user can get wrong or a service can refuse.

Each edge catches :class:`AnchoError` once: the CLI prints ``format_message()`` and
exits with ``exit_code``; the API answers ``http_status`` with ``to_dict()``; the
executor turns it into a status update reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class ErrorDetail:
    """One problem at one place: a JSON path (``/resources/cpus``), a flag or a file."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """The ``details`` item of an API error."""
        return {"path": self.path, "message": self.message}


@dataclass
class AnchoError(Exception):
    """Base class: a message for a person, an exit code and an HTTP status."""

    message: str
    details: list[ErrorDetail] = field(default_factory=list)
    exit_code: int = 2
    http_status: int = 400

    def __post_init__(self) -> None:
        Exception.__init__(self, self.message)

    def __str__(self) -> str:
        return self.format_message()

    def format_message(self) -> str:
        """One paragraph: the message, then each detail as ``path: message``."""
        if not self.details:
            return self.message
        lines = "; ".join(f"{d.path}: {d.message}" for d in self.details)
        return f"{self.message}: {lines}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of an API error response."""
        return {"error": self.message, "details": [d.to_dict() for d in self.details]}


class SpecError(AnchoError):
    """The run spec (file, flags or body) is not valid."""


class ModelError(AnchoError):
    """The model cannot be found, unpacked or loaded."""


class StoreError(AnchoError):
    """The result store is unreachable, refuses us or is at an unknown version."""


class NotFound(AnchoError):
    """A run (or other resource) does not exist, or is not the caller's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, [], 2, 404)


class ClusterError(AnchoError):
    """The development cluster (``ancho cluster``) could not be fetched, started or reached.

    Not the user's input: exit code 1, HTTP 503.
    """

    def __init__(self, message: str, details: list[ErrorDetail] | None = None) -> None:
        super().__init__(message, details or [], 1, 503)
