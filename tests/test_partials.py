"""Mergeable partial summaries: moments merged from blocks equal the whole data's, the
quantile sketch keeps the contract's rank bound, merges in index order are bitwise
reproducible whatever order blocks arrive in and however often they are retried, and
partials round-trip through JSON exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rank_bound import rank_error

from ancho.partials import BlockPartial, OutputPartial, QuantileSketch, RunPartials

QS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _block(run: RunPartials, x: np.ndarray, b: int) -> BlockPartial:
    start, stop = run.block_range(b)
    return BlockPartial.of(stop - start, 0, {"x": x[start:stop]}, run.sketch)


def _blocks(x: np.ndarray, size: int, accuracy: int = 100_000) -> RunPartials:
    run = RunPartials(len(x), size, accuracy)
    for b in range(run.blocks):
        run.put(b, _block(run, x, b))
        list(run.advance())
    return run


def _merged(run: RunPartials) -> dict[str, OutputPartial]:
    return run.prefix.outputs


def _population(x: np.ndarray) -> tuple[float, float, float]:
    d = x - x.mean()
    m2, m3, m4 = (d**2).mean(), (d**3).mean(), (d**4).mean()
    return x.var(ddof=1), m3 / m2**1.5, m4 / m2**2 - 3.0


def test_merged_moments_equal_the_whole_datas() -> None:
    rng = np.random.default_rng(1)
    x = rng.lognormal(0.5, 0.8, 100_003)  # skewed, heavy-tailed, a ragged last block
    merged = _merged(_blocks(x, 1000))["x"]
    variance, skewness, kurtosis = _population(x)
    assert merged.n == merged.count == len(x)
    assert merged.mean == pytest.approx(x.mean(), rel=1e-12)
    assert merged.variance == pytest.approx(variance, rel=1e-10)
    assert merged.skewness == pytest.approx(skewness, rel=1e-9)
    assert merged.kurtosis == pytest.approx(kurtosis, rel=1e-9)
    assert (merged.minimum, merged.maximum) == (x.min(), x.max())


def test_quantiles_are_exact_up_to_the_accuracy() -> None:
    x = np.random.default_rng(2).normal(size=100_000)
    merged = _merged(_blocks(x, 7_000))["x"]
    data = np.sort(x)
    for q, value in zip(QS, merged.sketch.quantiles(QS), strict=True):
        assert value == data[math.ceil(q * len(data)) - 1]


@pytest.mark.parametrize(("n", "accuracy"), [(1_000_000, 100_000), (200_000, 100)])
def test_quantiles_keep_the_rank_bound_beyond_it(n: int, accuracy: int) -> None:
    x = np.random.default_rng(3).exponential(size=n).round(3)  # with ties
    sketch = _merged(_blocks(x, 10_000, accuracy))["x"].sketch
    sketch.flush()
    assert sketch.weight == n
    assert len(sketch.levels) > 1  # compactions did happen
    data = np.sort(x)
    bound = max(1, n // accuracy)
    grid = [i / 200 for i in range(1, 200)]
    for q, value in zip(grid, sketch.quantiles(grid), strict=True):
        assert value is not None and rank_error(data, value, q) <= bound


def test_arrival_order_and_retries_do_not_change_a_bit() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_t(3, size=50_000)
    reference = json.dumps({k: v.to_dict() for k, v in _merged(_blocks(x, 1000)).items()})
    shuffled = RunPartials(len(x), 1000)
    order = rng.permutation(50)
    for b in [*order[:25], *order[:10], *order[25:], *order[:10]]:  # with retries
        # a block that arrives again: before its merge it replaces, after it it is a repeat
        shuffled.put(int(b), BlockPartial.from_dict(_block(shuffled, x, int(b)).to_dict()))
        list(shuffled.advance())
    merged = _merged(shuffled)
    assert shuffled.merged_blocks == 50 and not shuffled.waiting
    assert merged["x"].count == len(x) == shuffled.prefix.ok  # a retry never added
    assert json.dumps({k: v.to_dict() for k, v in merged.items()}) == reference


def test_a_prefix_merges_only_the_blocks_below_it() -> None:
    x = np.arange(10_000, dtype=float)
    run = RunPartials(len(x), 1000)
    for b in (0, 1, 2, 3, 5):
        run.put(b, _block(run, x, b))
    for end in run.advance():
        if end == 3000:
            break  # as a run stopped by its targets at k = 3000
    prefix = run.prefix.outputs["x"]
    assert (prefix.count, prefix.mean, prefix.maximum) == (3000, 1499.5, 2999.0)
    assert run.missing() == [4, 6, 7, 8, 9]
    live = run.live().outputs["x"]  # everything in: blocks 0-3 and 5
    assert (live.count, live.maximum) == (5000, 5999.0)


def test_non_finite_values_are_counted_apart() -> None:
    x = np.array([1.0, np.nan, 2.0, np.inf, -np.inf, np.inf, 3.0])
    partial = OutputPartial.of(x, QuantileSketch.for_count(len(x)))
    assert (partial.count, partial.nan, partial.posinf, partial.neginf) == (7, 1, 2, 1)
    assert (partial.n, partial.mean, partial.minimum, partial.maximum) == (3, 2.0, 1.0, 3.0)
    assert partial.sketch.weight == 6  # infinities are ranked, NaN is not
    assert partial.sketch.quantiles([0.01, 0.99]) == [-math.inf, math.inf]


def test_json_round_trip_is_exact_and_empty_partials_say_none() -> None:
    x = np.random.default_rng(5).normal(size=3000)
    partial = _merged(_blocks(x, 1000))["x"]
    again = OutputPartial.from_dict(json.loads(json.dumps(partial.to_dict())))
    assert again.to_dict() == partial.to_dict()
    assert again.sketch.quantiles(QS) == partial.sketch.quantiles(QS)
    empty = OutputPartial.of([], QuantileSketch.for_count(0))
    restored = OutputPartial.from_dict(json.loads(json.dumps(empty.to_dict())))
    assert restored.variance is None and restored.skewness is None
    assert restored.sketch.quantiles(QS) == [None] * len(QS)
    constant = OutputPartial.of([2.0] * 5, QuantileSketch.for_count(5))
    assert constant.variance == 0.0 and constant.kurtosis is None


def test_the_sketch_size_follows_the_run_size() -> None:
    assert QuantileSketch.for_count(1_000).k == 50_001  # never compacts below 100,000
    big = QuantileSketch.for_count(10_000_000)
    levels = 1 + math.ceil(math.log2(10_000_000 / (2 * big.k)))
    assert levels * 10_000_000 / (2 * big.k) <= 10_000_000 / 100_000
    with pytest.raises(ValueError):
        QuantileSketch.for_count(10, accuracy=0)
