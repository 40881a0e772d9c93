"""Seeding contract: sequence ``i`` of a run with seed ``S`` draws from one generator.

``numpy.random.default_rng(numpy.random.SeedSequence(entropy=S, spawn_key=(i,)))``:
the stream depends only on (S, i), never on batch boundaries, executor counts or
retries, so stored outputs are bitwise identical however a run is spread out.

Making that generator the plain way costs about 15 µs, most of a trivial model's
sequence: ``SeedSequence`` hashes its entropy in Python-level loops. :class:`Streams`
makes the same generators for a range of indices at about a fifth of that. For one seed
the first four entropy words (the seed, padded with zeros) are the same for every
sequence, so numpy's hash of them is done once; only the spawn-key word and the output
hash (``generate_state(4, uint64)``, the words PCG64 is seeded with) depend on ``i``,
and those are a fixed sequence of 32-bit multiplies, xors and shifts, computed for a
whole range at once with numpy. Each sequence still gets a fresh ``Generator`` and
``PCG64`` of its own, seeded by numpy from those words; their ``seed_seq`` behaves as
the real ``SeedSequence(S, spawn_key=(i,))`` (``spawn``, ``entropy``, ``spawn_key`` and
the rest are delegated to one made on first use). ``tests/test_seeding.py`` holds the
streams to numpy's, bit for bit, over many seeds and indices.

The constants and steps are those of numpy's ``SeedSequence`` (``bit_generator.pyx``,
after Melissa O'Neill's ``seed_seq``), reimplemented here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.random.bit_generator import ISpawnableSeedSequence

#: Seeds are stored as signed 64-bit integers (SQLite INTEGER, Cassandra bigint).
MAX_SEED = 2**63 - 1

_M32 = 0xFFFFFFFF
_INIT_A, _MULT_A = 0x43B0D7E5, 0x931E8875
_INIT_B, _MULT_B = 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R = 0xCA01F9DD, 0x4973F715
_POOL = 4
#: Indices whose generators are worked out at a time.
_CHUNK = 4096

U64 = npt.NDArray[np.uint64]


def sequence_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sequence ``index`` of a run seeded with ``seed`` (the definition)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index,))))


def draw_seed() -> int:
    """A fresh run seed for a spec that names none (recorded on the run)."""
    return secrets.randbits(63)


def _words(value: int) -> list[int]:
    """``value`` as little-endian 32-bit words, as numpy coerces entropy (0 is ``[0]``)."""
    out = []
    while True:
        out.append(value & _M32)
        value >>= 32
        if not value:
            return out


def _mix(x: int, y: int) -> int:
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> 16)


class _Hash:
    """numpy's ``hashmix``: a multiplier that advances with every call."""

    def __init__(self, const: int, mult: int) -> None:
        self.const, self.mult = const, mult

    def __call__(self, value: int) -> int:
        value ^= self.const
        self.const = (self.const * self.mult) & _M32
        value = (value * self.const) & _M32
        return value ^ (value >> 16)

    def steps(self, n: int) -> list[tuple[int, int]]:
        """The (xor, multiply) constants of the next ``n`` calls (advancing)."""
        out = []
        for _ in range(n):
            nxt = (self.const * self.mult) & _M32
            out.append((self.const, nxt))
            self.const = nxt
        return out


class _SeedSequence(ISpawnableSeedSequence):  # type: ignore[misc]
    """What ``PCG64`` and a model see as the generator's ``seed_seq``: the seeding words
    worked out already, and everything else from the real ``SeedSequence``."""

    __slots__ = ("_index", "_real", "_seed", "_words")

    def __init__(self, words: U64, seed: int, index: int) -> None:
        self._words, self._seed, self._index = words, seed, index
        self._real: np.random.SeedSequence | None = None

    @property
    def real(self) -> np.random.SeedSequence:
        if self._real is None:
            self._real = np.random.SeedSequence(self._seed, spawn_key=(self._index,))
        return self._real

    def generate_state(self, n_words: int, dtype: Any = np.uint32) -> Any:
        if n_words == 4 and np.dtype(dtype) == np.uint64:
            return self._words
        return self.real.generate_state(n_words, dtype)

    def spawn(self, n_children: int) -> Any:  # the real one's children: SeedSequences
        return self.real.spawn(n_children)

    def __getattr__(self, name: str) -> Any:  # entropy, spawn_key, pool, state, ...
        return getattr(self.real, name)

    def __repr__(self) -> str:
        return repr(self.real)


class Streams:
    """The contract's generators of one run's sequences, made fast (module docstring)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        entropy = _words(seed)
        entropy += [0] * (_POOL - len(entropy))  # padded: a spawn key follows
        hashmix = _Hash(_INIT_A, _MULT_A)
        pool = [hashmix(word) for word in entropy]
        for src in range(_POOL):
            for dst in range(_POOL):
                if src != dst:
                    pool[dst] = _mix(pool[dst], hashmix(pool[src]))
        self._pool = pool
        self._spawn = hashmix.steps(_POOL)  # the spawn-key word's four hashmix calls
        self._out = _Hash(_INIT_B, _MULT_B).steps(2 * _POOL)  # generate_state(4, uint64)
        self._simple = len(_words(seed)) <= _POOL

    def words(self, start: int, stop: int) -> U64:
        """The PCG64 seeding words (``generate_state(4, uint64)``) of sequences
        ``start..stop-1``, one row each; every index must be below 2**32."""
        index = np.arange(start, stop, dtype=np.uint64).astype(np.uint32)
        u32 = np.uint32
        pool = [np.full(index.size, p, dtype=np.uint32) for p in self._pool]
        with np.errstate(over="ignore"):
            for dst, (const, mult) in enumerate(self._spawn):
                v = (index ^ u32(const)) * u32(mult)
                v ^= v >> u32(16)
                r = u32(_MIX_L) * pool[dst] - u32(_MIX_R) * v
                pool[dst] = r ^ (r >> u32(16))
            out = np.empty((index.size, 2 * _POOL), dtype=np.uint32)
            for k, (const, mult) in enumerate(self._out):
                v = (pool[k % _POOL] ^ u32(const)) * u32(mult)
                out[:, k] = v ^ (v >> u32(16))
        return out.astype("<u4").view("<u8").astype(np.uint64)

    def generators(self, start: int, stop: int) -> Iterator[np.random.Generator]:
        """A fresh generator for each sequence ``start..stop-1``, in order."""
        fast_stop = min(stop, 2**32) if self._simple else start
        for lo in range(start, fast_stop, _CHUNK):
            hi = min(lo + _CHUNK, fast_stop)
            words = self.words(lo, hi)
            for k in range(hi - lo):
                seq = _SeedSequence(words[k], self.seed, lo + k)
                yield np.random.Generator(np.random.PCG64(seq))
        for i in range(max(start, fast_stop), stop):  # spawn keys of two words: numpy's way
            yield sequence_rng(self.seed, i)
