"""The progress bar of ``ancho run`` and ``ancho submit --wait`` on stderr: done/failed,
rate, ETA, the first output's live mean and 95% half-width, state."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TextIO

from .store import RunRecord


class ProgressBar:
    """Redraws one line on a terminal; on a pipe, prints a line when the state changes."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._first_done: tuple[float, int] | None = None
        self._state = ""
        self._drawn = 0.0
        self._last_change: tuple[float, int] = (self.started, 0)
        self._estimate = ""

    def update(self, run: RunRecord, live: Mapping[str, Any] | None = None) -> None:
        """Show the run's latest counts and live statistics (at most ten times a second)."""
        now = time.monotonic()
        if live:
            self._estimate = estimate_text(live, run.outputs)
        done = run.ok + run.failed
        if self._first_done is None and done > 0:
            self._first_done = (now, done)
        if done != self._last_change[1]:
            self._last_change = (now, done)
        if self.tty:
            if now - self._drawn >= 0.1 or run.done:
                self._drawn = now
                self.stream.write("\r" + self._line(run, now) + "\x1b[K")
                self.stream.flush()
        elif run.state != self._state:
            self.stream.write(self._line(run, now) + "\n")
            self.stream.flush()
        self._state = run.state

    def _line(self, run: RunRecord, now: float) -> str:
        done = run.ok + run.failed
        filled = int(self.WIDTH * min(done / self.total, 1.0))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        rate_text = eta_text = ""
        if run.state not in ("STAGING", "RUNNING"):
            elapsed = time.monotonic() - self.started
            failed = f" failed {run.failed:,}" if run.failed else ""
            return f"[{bar}] {done:,}/{self.total:,}{failed} {elapsed:,.1f}s {run.state}"
        if (
            self._first_done is not None
            and now > self._first_done[0]
            and done > self._first_done[1]
        ):
            rate = (done - self._first_done[1]) / (now - self._first_done[0])
            rate_text = f" {rate:,.0f} seq/s"
            if not run.done and rate > 0:
                eta_text = f" ETA {max(self.total - done, 0) / rate:,.0f}s"
        failed = f" failed {run.failed:,}" if run.failed else ""
        estimate = f" {self._estimate}" if self._estimate else ""
        return f"[{bar}] {done:,}/{self.total:,}{failed}{rate_text}{eta_text}{estimate} {run.state}"

    def close(self, run: RunRecord) -> None:
        """Draw the final state and end the line."""
        if self.tty:
            self.stream.write("\r" + self._line(run, time.monotonic()) + "\x1b[K\n")
        elif run.state != self._state:
            self.stream.write(self._line(run, time.monotonic()) + "\n")
        self.stream.flush()


def estimate_text(live: Mapping[str, Any], outputs: list[str] | None) -> str:
    """``"pi 3.1416 ± 0.0012"``: the first output's live mean and 95% half-width."""
    names = [n for n in (outputs or []) if n in live] or sorted(live)
    if not names:
        return ""
    stats = live[names[0]]
    mean, ci = stats.get("mean"), stats.get("ci95")
    if mean is None:
        return ""
    if not ci:
        return f"{names[0]} {mean:.6g}"
    return f"{names[0]} {mean:.6g} ± {(ci[1] - ci[0]) / 2:.2g}"
