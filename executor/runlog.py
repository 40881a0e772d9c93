"""The executor's share of a run's log: its own records and the model's output, in the store.

Lines go to the store as events (``Store.append_events``) with source ``executor`` (the
``ancho.executor`` logger, INFO and above) or ``model`` (the model process's stdout at
level ``info``, its stderr at level ``warning``), each prefixed with the executor's short
id (``[e0] …``) so the lines of several executors of a run can be told apart.

Bounded, so that a model printing in a hot loop neither floods the store nor slows the
run: lines are buffered and a background thread writes them at most every
:data:`FLUSH_S` (a line after a quiet spell goes at once); a line keeps at most
:data:`LINE_BYTES`; an executor process stores at most :data:`MODEL_LINES` lines of
model output, then one line saying the rest was dropped (everything still goes to the
executor's own stdout/stderr, the sandbox files). A store that fails while flushing
costs those lines (said on stderr), never the executor.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from ancho.store import Store

#: At most one write to the store per this many seconds.
FLUSH_S = 0.5
#: Longest line kept, in bytes (longer ones are cut and marked).
LINE_BYTES = 4096
#: Model output lines stored per executor process; the rest is dropped with one notice.
MODEL_LINES = 10_000
#: The executor's own records stored per executor process (a safety net: it logs little).
EXECUTOR_LINES = 2_000
#: Events per ``append_events`` call (Cassandra numbers up to 1000 events per call apart).
_CHUNK = 500
_READ = 65536
#: A pause after a short read lets lines gather (the pipe holds 64 KB meanwhile).
_GATHER_S = 0.02

#: Where the run log reports its own trouble: stderr only (not a child of ancho.executor).
_warn = logging.getLogger("ancho.runlog")
_current: RunLog | None = None


def clip(text: str, limit: int = LINE_BYTES) -> str:
    """``text`` cut to ``limit`` bytes of UTF-8, marked when cut."""
    if len(text) * 4 <= limit:
        return text
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore") + f" [… cut at {limit} bytes]"


class RunLog:
    """Buffers a run's log lines and writes them to the store from a background thread."""

    def __init__(self, run_id: str, open_store: Callable[[], Store], *, tag: str = "",
                 flush_s: float = FLUSH_S, model_lines: int = MODEL_LINES,
                 executor_lines: int = EXECUTOR_LINES) -> None:  # fmt: skip
        self.run_id = run_id
        self.prefix = f"[{tag}] " if tag else ""
        self.flush_s = flush_s
        self._open = open_store
        self._store: Store | None = None
        self._store_lock = threading.Lock()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._buf: list[tuple[str, str, str]] = []
        self._caps = {"model": model_lines, "executor": executor_lines}
        self._left = dict(self._caps)
        self._full = {"model": False, "executor": False}
        self._thread = threading.Thread(target=self._loop, name="ancho-run-log", daemon=True)
        #: Lines not stored: model lines past the cap, and lines lost to store errors.
        self.dropped = 0
        self.lost = 0

    # --- the store, shared with the batch worker ------------------------------------
    def store(self) -> Store:
        """The run's store, opened on first use (a failed open is tried again next time)."""
        with self._store_lock:
            if self._store is None:
                self._store = self._open()
            return self._store

    # --- lines in ---------------------------------------------------------------------
    def executor_line(self, level: str, message: str) -> None:
        """One of the executor's own records."""
        self._add("executor", level, [clip(message)])

    def model_lines(self, level: str, lines: Sequence[str]) -> bool:
        """Lines of the model's output; False once the cap has dropped some (stop sending)."""
        return self._add("model", level, lines)

    def _add(self, source: str, level: str, lines: Sequence[str]) -> bool:
        with self._lock:
            if self._full[source]:
                self.dropped += len(lines)
                return False
            room = self._left[source]
            take = lines if len(lines) <= room else lines[:room]
            self._left[source] = room - len(take)
            prefix = self.prefix
            self._buf.extend((source, level, prefix + line) for line in take)
            if len(take) < len(lines):
                self._full[source] = True
                self.dropped += len(lines) - len(take)
                cap = self._caps[source]
                what = "model output" if source == "model" else "executor log"
                self._buf.append(("executor", "warning",
                                  f"{prefix}{what} over {cap} lines: the rest is not stored in"
                                  " the run's log (it is still in the executor's stdout/stderr"
                                  " in the sandbox)"))  # fmt: skip
            self._ready.notify()
            return not self._full[source]

    # --- lines out --------------------------------------------------------------------
    def start(self) -> RunLog:
        """Start the flushing thread."""
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Write what is buffered and stop (waits at most ``timeout``); lines after it are lost."""
        with self._lock:
            self._closing.set()
            self._ready.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                _warn.warning("run log: the store did not take the last lines in %.0f s", timeout)
        elif self._thread.ident is None:
            self._flush()  # never started: write in this thread

    def _loop(self) -> None:
        last = -float("inf")
        while True:
            with self._lock:
                while not self._buf and not self._closing.is_set():
                    self._ready.wait()
                if not self._buf:
                    return
            wait = last + self.flush_s - time.monotonic()
            if wait > 0:
                self._closing.wait(wait)  # closing cuts the wait short
            last = time.monotonic()
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            batch, self._buf = self._buf, []
        if not batch:
            return
        stored = 0
        try:
            store = self.store()
            while stored < len(batch):
                store.append_events(self.run_id, batch[stored : stored + _CHUNK])
                stored += _CHUNK
        except Exception as exc:  # never the executor's end: say it on stderr, drop them
            lost = len(batch) - stored
            self.lost += lost
            _warn.warning("run log: %d lines not stored: %s", lost, exc)


class RunLogHandler(logging.Handler):
    """A logging handler that puts records (INFO and above) in the run's log."""

    def __init__(self, runlog: RunLog, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.runlog = runlog
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        """Hand the record's message (with its traceback, if any) to the run log."""
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + self._formatter.formatException(record.exc_info)
            self.runlog.executor_line(record.levelname.lower(), message)
        except Exception:
            self.handleError(record)


def install(runlog: RunLog | None) -> None:
    """Make ``runlog`` this process's run log (what the batch worker writes model output to)."""
    global _current
    _current = runlog


def current() -> RunLog | None:
    """This process's run log, if the executor's main installed one."""
    return _current


# --- the model's output ------------------------------------------------------------------
class LineSplitter:
    """Bytes in, complete lines out (decoded, without the newline, cut at ``limit`` bytes)."""

    def __init__(self, limit: int = LINE_BYTES) -> None:
        self.limit = limit
        self._partial = b""
        self._skipping = False  # the rest of a line already cut and sent

    def feed(self, chunk: bytes) -> list[str]:
        """The lines ``chunk`` completes."""
        parts = chunk.split(b"\n")
        rest = parts.pop()
        out: list[str] = []
        if parts:
            first = parts[0]
            if self._skipping:
                self._skipping = False
                parts = parts[1:]
            elif self._partial:
                parts[0] = self._partial + first
            self._partial = b""
            out = [self._text(p) for p in parts]
        if rest and not self._skipping:
            self._partial += rest
            if len(self._partial) > self.limit:
                out.append(self._text(self._partial))
                self._partial = b""
                self._skipping = True
        return out

    def end(self) -> list[str]:
        """The last line when the stream ended without a newline."""
        rest, self._partial = self._partial, b""
        return [self._text(rest)] if rest else []

    def _text(self, raw: bytes) -> str:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self.limit:
            cut = raw[: self.limit].decode("utf-8", "ignore")
            return f"{cut} [… cut at {self.limit} bytes]"
        return raw.decode("utf-8", "replace")


def pump(source: int, mirror: int | None, level: str, runlog: RunLog | None) -> None:
    """Copy one output stream of the model's process until it ends, then close ``source``.

    Every byte goes to ``mirror`` (the executor's own stdout or stderr, so the sandbox
    files keep the model's output whole) and each line to ``runlog`` at ``level``,
    until the run log's cap says stop.
    """
    splitter = LineSplitter()
    wanted = runlog is not None
    try:
        while True:
            try:
                chunk = os.read(source, _READ)
            except OSError:
                break
            if not chunk:
                break
            if mirror is not None:
                try:
                    _write_all(mirror, chunk)
                except OSError:
                    mirror = None  # our own stdout is gone: keep feeding the run log
            if wanted and runlog is not None:
                lines = splitter.feed(chunk)
                if lines:
                    wanted = runlog.model_lines(level, lines)
            if len(chunk) < _READ:
                time.sleep(_GATHER_S)  # let a chatty model's lines gather: fewer wake-ups
        if wanted and runlog is not None:
            last = splitter.end()
            if last:
                runlog.model_lines(level, last)
    finally:
        os.close(source)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
