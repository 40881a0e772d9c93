"""Seeding contract: sequence ``i`` of a run with seed ``S`` draws from one generator.

``numpy.random.default_rng(numpy.random.SeedSequence(entropy=S, spawn_key=(i,)))``:
the stream depends only on (S, i), never on batch boundaries, executor counts or
retries, so stored outputs are bitwise identical however a run is spread out.
"""

from __future__ import annotations

import secrets

import numpy as np

#: Seeds are stored as signed 64-bit integers (SQLite INTEGER, Cassandra bigint).
MAX_SEED = 2**63 - 1


def sequence_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sequence ``index`` of a run seeded with ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,))))


def draw_seed() -> int:
    """A fresh run seed for a spec that names none (recorded on the run)."""
    return secrets.randbits(63)
