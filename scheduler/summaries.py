"""A run's summary, made from its blocks' partial summaries (DESIGN.md, "Stored
results and summary"): no Spark, no second read of the results.

By the time a run is SUMMARIZING the state machine has merged, in index order, every
block whose partial came with a status update. What may be missing is filled here:
a block whose partial was stored but never reported (its executor died between the
two) is read from the store's partials; a block with no partial at all (its rows came
from several attempts, or the scheduler wrote its failed rows) is computed from its
stored rows, exactly as an executor would have. Only a model's custom ``summarize``
still needs Spark; it runs after this, and its result goes under ``custom``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ancho.partials import BlockPartial, RunPartials, statistics
from ancho.store import Store

log = logging.getLogger("ancho.scheduler")

#: ``custom(run_id)``: the custom summary's result, and why it failed (or None).
CustomSummary = Callable[[str], tuple[dict[str, Any], str | None]]


@dataclass(slots=True, frozen=True)
class SummaryOutcome:
    """What the summary step reports back: final counts, or why it failed."""

    ok: int
    failed: int
    error: str | None = None


def fill_missing(store: Store, run_id: str, partials: RunPartials, end_block: int) -> int:
    """Put every block below ``end_block`` that is neither merged nor waiting: from the
    store's partials, else from the stored rows. Returns how many were computed from
    rows."""
    missing = partials.missing(end_block)
    if not missing:
        return 0
    stored = store.list_partials(run_id)
    computed = 0
    for block in missing:
        if block in stored:
            partials.put(block, BlockPartial.from_dict(stored[block]))
            continue
        start, stop = partials.block_range(block)
        rows = list(store.iter_results(run_id, start, stop))
        partials.put(block, BlockPartial.of_rows(rows, partials.sketch))
        computed += 1
    return computed


def _final_point(store: Store, run_id: str, partials: RunPartials) -> None:
    """End the convergence series with the whole (merged) run's point."""
    from .state import add_series_point

    doc = store.get_live(run_id) or {"live": {}, "series": {}}
    add_series_point(doc.setdefault("series", {}), partials)
    store.put_live(run_id, doc)


def summarize_from_partials(
    store: Store,
    run_id: str,
    partials: RunPartials,
    *,
    stopped: int | None = None,
    has_targets: bool = False,
    custom: CustomSummary | None = None,
) -> SummaryOutcome:
    """Merge the run's blocks (up to ``stopped`` when its targets were met, removing
    the rows beyond), store the summary, and return the final counts."""
    t0 = time.perf_counter()
    run = store.get_run(run_id)
    end = run.sequences if stopped is None else stopped
    end_block = math.ceil(end / partials.block_size)
    computed = fill_missing(store, run_id, partials, end_block)
    if partials.merged_sequences < end:  # a stopped run's prefix is already at its end
        for merged in partials.advance():
            if merged >= end:
                break
    if partials.merged_blocks < end_block:  # cannot happen: every block was put
        return SummaryOutcome(0, 0, f"blocks from {partials.merged_blocks} have no summary")
    if stopped is not None:
        store.truncate_run(run_id, stopped, end_block)
    prefix = partials.prefix
    t_merge = time.perf_counter()
    names = list(run.outputs or sorted(prefix.outputs))
    summary: dict[str, Any] = {
        "outputs": {name: statistics(prefix.outputs.get(name)) for name in names},
        "custom": {},
    }
    if has_targets:
        summary["targets_met"] = stopped is not None
        if stopped is not None:
            summary["stopped"] = {"reason": "targets met", "sequences": stopped}
    t_stats = time.perf_counter()
    error = None
    if custom is not None and run.spec["model"].get("summary"):
        summary["custom"], error = custom(run_id)
    store.put_summary(run_id, summary)
    _final_point(store, run_id, partials)
    log.info(
        "summary of run %s: %d blocks (%d from rows), merge %.3f s, statistics %.3f s,"
        " custom %.2f s", run_id, end_block, computed, t_merge - t0, t_stats - t_merge,
        time.perf_counter() - t_stats,
    )  # fmt: skip
    if prefix.ok + prefix.failed != end:
        why = f"the store holds {prefix.ok + prefix.failed} of the run's {end} sequences"
        return SummaryOutcome(prefix.ok, prefix.failed, why)
    return SummaryOutcome(prefix.ok, prefix.failed, error)
