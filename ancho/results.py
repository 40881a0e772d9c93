"""Per-sequence results as stored and served (the "Stored results" contract)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

#: What an output may be called (the model contract).
OUTPUT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")

OutputValue = int | float | bool
SequenceStatus = Literal["ok", "failed"]


@dataclass(slots=True, frozen=True)
class SequenceResult:
    """One sequence's stored outcome.

    ``outputs`` is empty for failed sequences; ``error`` holds ``type``, ``message`` and
    ``traceback`` for them.
    """

    sequence: int
    status: SequenceStatus
    outputs: dict[str, OutputValue]
    error: dict[str, str] | None = None
    attempt: int = 1
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines shape of `ancho results --format jsonl`."""
        out: dict[str, Any] = {
            "sequence": self.sequence,
            "status": self.status,
            "outputs": self.outputs,
        }
        if self.error is not None:
            out["error"] = self.error
        return out
