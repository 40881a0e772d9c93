"""A model that talks: a line on stdout per sequence, a line on stderr every 10th.

The sequence index comes from the generator (the seeding contract makes it the
SeedSequence's spawn key). Parameters: ``sleep_s`` per sequence, ``lines`` extra
stdout lines per sequence (a flood), ``long`` characters of one long line per sequence.
Each line carries the wall-clock time it was printed, for latency tests.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Print, sleep, draw."""
    index = rng.bit_generator.seed_seq.spawn_key[0]  # type: ignore[attr-defined]
    print(f"chatty sequence {index} printed at {time.time():.6f}")
    if index % 10 == 0:
        print(f"chatty stderr {index}", file=sys.stderr)
    for k in range(int(params.get("lines", 0))):
        print(f"flood {index}.{k}")
    if params.get("long"):
        print("L" * int(params["long"]))
    time.sleep(float(params.get("sleep_s", 0.0)))
    return {"u": float(rng.random())}
