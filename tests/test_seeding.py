"""The fast generators (``ancho.seeding.Streams``) are the contract's, bit for bit:
``default_rng(SeedSequence(S, spawn_key=(i,)))`` for many seeds and indices, across
chunk edges and the 2**32 boundary, with ``spawn`` and ``seed_seq`` as numpy's."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ancho.seeding import MAX_SEED, Streams, sequence_rng

SEEDS = [0, 1, 42, 2**31 - 1, 2**32 - 1, 2**32, 2**32 + 1, 123_456_789_012_345, MAX_SEED]


def _draws(rng: np.random.Generator) -> list[float | int]:
    return [*rng.random(3).tolist(), int(rng.integers(0, 2**62)), float(rng.standard_normal())]


@pytest.mark.parametrize("seed", SEEDS)
def test_every_generator_is_numpys(seed: int) -> None:
    starts = [0, 4090, 2**32 - 3]  # from 0, across a chunk edge, across 2**32
    for start in starts:
        got = [_draws(g) for g in itertools.islice(Streams(seed).generators(start, start + 9), 9)]
        want = [_draws(sequence_rng(seed, i)) for i in range(start, start + 9)]
        assert got == want, (seed, start)


def test_many_random_seeds_and_indices() -> None:
    picker = np.random.default_rng(7)
    for seed in picker.integers(0, MAX_SEED, 40, dtype=np.int64).tolist():
        start = int(picker.integers(0, 10**9))
        words = Streams(seed).words(start, start + 500)
        for k in picker.integers(0, 500, 5).tolist():
            ref = np.random.SeedSequence(seed, spawn_key=(start + k,)).generate_state(4, np.uint64)
            assert words[k].tolist() == ref.tolist()


def test_a_generator_is_fresh_and_its_seed_sequence_is_the_real_ones() -> None:
    first, second = itertools.islice(Streams(9).generators(10, 12), 2)
    assert first is not second and first.bit_generator is not second.bit_generator
    ref = np.random.SeedSequence(9, spawn_key=(10,))
    seq = first.bit_generator.seed_seq
    assert (seq.entropy, seq.spawn_key, seq.pool_size) == (ref.entropy, ref.spawn_key, 4)
    assert seq.generate_state(3).tolist() == ref.generate_state(3).tolist()
    mine = [c.random(2).tolist() for c in first.spawn(3)]
    theirs = [c.random(2).tolist() for c in np.random.default_rng(ref).spawn(3)]
    assert mine == theirs
