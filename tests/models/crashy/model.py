"""A model that kills its executor process once (the first time it sees ``crash_at``).

A marker file (in the model's scratch folder, which outlives its process within the
executor) makes the crash happen once per test, so the re-launched batch succeeds:
this exercises the scheduler's retry of a lost executor's unfinished batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

_count = 0


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | int | bool]:
    """Exit the whole process abruptly after ``crash_after`` sequences, once."""
    global _count
    _count += 1
    marker = Path(params["marker"])
    if _count > int(params.get("crash_after", 50)) and not marker.exists():
        marker.write_text("crashed")
        os._exit(17)
    u = rng.random()
    return {"u": float(u), "k": int(rng.integers(0, 1000)), "big": bool(u > 0.5)}
