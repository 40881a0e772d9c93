"""The partial summaries of the blocks a batch completes (DESIGN.md, "Architecture").

A run's sequences fall in fixed blocks (:func:`ancho.partials.block_size`); batches are
cut out of whole blocks, except that a batch retried from the middle of a block starts
where storage stopped. Its block's earlier rows are then read back from the store, so a
block's partial is always a function of the block's rows in index order, whichever
attempts produced them: the same rows give the same bits.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ancho.partials import BlockPartial, RunPartials
from ancho.results import SequenceResult

log = logging.getLogger("ancho.executor")


class BlockCollector:
    """Collects a batch's rows block by block; :meth:`add` returns a block's partial when
    its last row arrives."""

    def __init__(self, run: RunPartials, start: int, earlier: Iterable[SequenceResult] = ()):
        """``earlier``: the stored rows of ``start``'s block before ``start``."""
        self.run = run
        self.block = start // run.block_size
        self.rows: list[SequenceResult] = []
        self.broken = False
        first, _ = run.block_range(self.block)
        if first < start:
            self.rows = [r for r in earlier if first <= r.sequence < start]
            if len(self.rows) != start - first:
                log.warning(
                    "block %d: %d of its %d earlier rows are stored; its partial is left to"
                    " the scheduler", self.block, len(self.rows), start - first,
                )  # fmt: skip
                self.broken = True

    def add(self, result: SequenceResult) -> tuple[int, BlockPartial] | None:
        """Take the next row (rows come in index order)."""
        first, stop = self.run.block_range(self.block)
        if result.sequence != first + len(self.rows):
            self.broken = True  # a gap: never a partial from rows that are not all there
        self.rows.append(result)
        if result.sequence + 1 < stop:
            return None
        block, broken, rows = self.block, self.broken, self.rows
        self.block, self.broken, self.rows = block + 1, False, []
        return None if broken else (block, BlockPartial.of_rows(rows, self.run.sketch))
