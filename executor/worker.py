"""The batch worker: one thread that runs this executor's batches one after another.

Mesos callbacks only queue work here, so they never block. The model is loaded once
per process (its ``setup`` called once), on the first batch. Results are written to
the store in chunks (idempotent upserts), and progress is reported only for what is
stored, so a batch re-launched elsewhere restarts exactly where storage stopped.
The model's output goes to the run's log (:mod:`executor.runlog`), whose store this
worker shares.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ancho.errors import AnchoError, ModelError
from ancho.messages import BatchReport
from ancho.model import materialize
from ancho.partials import BlockPartial, RunPartials
from ancho.requirements import install
from ancho.results import SequenceResult
from ancho.store import Store, open_store

from . import runlog as runlogs
from .blocks import BlockCollector
from .config import ExecutorConfig
from .memory import rss_bytes
from .model_process import ModelCrashed, ModelProcess
from .protocol import InvalidMessage, LoadRequest
from .runlog import RunLog
from .status import StatusReporter

log = logging.getLogger("ancho.executor")

# Backoff between store write attempts: about a minute in all, long enough for a
# restarted Cassandra node to come back.
_STORE_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0)


@dataclass(slots=True, frozen=True)
class BatchTask:
    """A batch as the scheduler sent it in TaskInfo.data."""

    task_id: str
    start: int
    stop: int
    attempt: int


class BatchWorker:
    """Runs batches from a queue; reports through a :class:`StatusReporter`."""

    def __init__(self, config: ExecutorConfig, reporter: StatusReporter,
                 runlog: RunLog | None = None) -> None:  # fmt: skip
        self.config = config
        self.reporter = reporter
        #: Where the model's output goes (default: the one the executor's main installed).
        self.runlog = runlog if runlog is not None else runlogs.current()
        self._queue: queue.Queue[BatchTask | None] = queue.Queue()
        self._cancelled: set[str] = set()
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._store: Store | None = None
        self._model: ModelProcess | None = None
        self._request: LoadRequest | None = None
        self._blocks: RunPartials | None = None
        self._thread = threading.Thread(target=self._loop, name="ancho-batches", daemon=True)
        self.on_idle_exit: Any = None
        self._on_done: Any = None
        self._ended = False

    def start(self) -> None:
        """Start the worker thread."""
        self._thread.start()

    def submit(self, task: BatchTask) -> None:
        """Queue a batch (called from the launchTask callback)."""
        with self._lock:
            self._held.add(task.task_id)
        self._queue.put(task)

    def cancel(self, task_id: str) -> None:
        """Kill a batch: a queued one is dropped, a running one stops after its sequence."""
        with self._lock:
            self._cancelled.add(task_id)

    def idle(self) -> bool:
        """Whether no batch is queued or running."""
        with self._lock:
            return not self._held

    def stop(self) -> None:
        """Stop after the current sequence; queued batches are reported killed."""
        self._stopping.set()
        self._queue.put(None)

    def shutdown(self, timeout: float) -> None:
        """Stop, and wait up to ``timeout`` for the model's process to be gone."""
        self.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # --- the loop ------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                task = self._queue.get(timeout=self.config.idle_timeout_s)
            except queue.Empty:
                if self.idle() and self.on_idle_exit is not None:
                    log.info("idle for %.0f s: exiting", self.config.idle_timeout_s)
                    self.on_idle_exit()
                    break
                continue
            if task is None:
                break
            try:
                self._run(task)
            except Exception as exc:  # never leave a task without a terminal update
                log.exception("batch %s failed", task.task_id)
                self.reporter.send(task.task_id, "TASK_FAILED", message=_describe(exc))
            finally:
                with self._lock:
                    self._held.discard(task.task_id)
                    self._cancelled.discard(task.task_id)
        self._drain()
        if self._model is not None:
            self._model.close()
        with self._lock:
            self._ended, on_done = True, self._on_done
        if on_done is not None:
            on_done()

    def _drain(self) -> None:
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                return
            if task is not None:
                self.reporter.send(task.task_id, "TASK_KILLED", message="executor shutting down")

    def _load(self) -> tuple[Store, ModelProcess]:
        """The store, and the model's process (started, or restarted after a crash)."""
        if self._store is None:
            runlog = self.runlog
            self._store = runlog.store() if runlog else open_store(self.config.store_url)
        store = self._store
        if self._request is None:
            run = store.get_run(self.config.run_id)
            self._blocks = RunPartials.for_run(run.sequences)
            model = run.spec["model"]
            model_dir = materialize(model["source"], self.config.cache_dir / "models", store)
            env_dir = None
            if requirements := requirements_file(model, model_dir):
                env_dir = install(requirements, self.config.cache_dir)
            config = self.config
            self._request = LoadRequest(
                model_dir=str(model_dir),
                entrypoint=model["entrypoint"],
                setup=model.get("setup"),
                params=run.spec.get("parameters", {}),
                seed=run.seed,
                outputs=run.outputs,
                requirements_dir=str(env_dir) if env_dir else None,
                network=config.model_network,
                scratch_dir=str(_scratch_dir()),
                allow_weaker=config.sandbox_allow_weaker,
                max_processes=config.sandbox_max_processes,
                max_open_files=config.sandbox_max_open_files,
                max_file_mb=config.sandbox_max_file_mb,
            )
        if self._model is None or not self._model.alive():
            if self._model is not None:
                self._model.close()
                self._model = None
            Path(self._request.scratch_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
            run_id = self.config.run_id
            process = ModelProcess(self._request, self._model_limit_mb(),
                                   lambda names: store.register_outputs(run_id, names),
                                   self.config.model_mem_mb, self.runlog)  # fmt: skip
            process.start()
            self._model = process
        return store, self._model

    def _model_limit_mb(self) -> float | None:
        """The spec's memory less what this executor holds itself."""
        if self.config.model_mem_mb is None:
            return None
        own = rss_bytes(os.getpid()) / 2**20
        return max(self.config.model_mem_mb - own, 16.0)

    def _run(self, task: BatchTask) -> None:
        tid = task.task_id
        if tid in self._cancelled:
            self.reporter.send(tid, "TASK_KILLED", message="killed before it started")
            return
        progress = BatchReport(task.start)
        self.reporter.send(tid, "TASK_RUNNING", progress)
        try:
            store, model = self._load()
        except ModelError as exc:
            # The same model fails the same way everywhere: tell the scheduler not to retry.
            fatal = replace(progress, fatal=True, error=exc.format_message())
            self.reporter.send(tid, "TASK_FAILED", fatal, message=exc.format_message())
            return
        assert self._blocks is not None
        batch = _Batch(tid, progress, self._collector(store, task.start))
        t0 = time.perf_counter()
        flush_rows, flush_s = self.config.flush_rows, self.config.flush_s
        last_flush = time.monotonic()
        with contextlib.closing(model.run(task.start, task.stop, task.attempt)) as results:
            try:
                for n, result in enumerate(results, 1):
                    batch.add(result)
                    # Killed (or stopping): the batch ends after this sequence, with
                    # everything computed stored first, so the rest can run elsewhere.
                    cut = tid in self._cancelled or self._stopping.is_set()
                    if (
                        cut
                        or len(batch.rows) >= flush_rows
                        or (n % 64 == 0 and time.monotonic() - last_flush >= flush_s)
                    ):
                        self._flush(store, batch)
                        last_flush = time.monotonic()
                        if cut:
                            results.close()
                            self.reporter.send(tid, "TASK_KILLED", batch.report(), message="killed")
                            return
                        if self.reporter.progress(tid, batch.report()):
                            batch.reported()
            except InvalidMessage as exc:
                # A model that breaks the protocol does so on every attempt: no retry.
                self._flush(store, batch)
                log.error("batch %s: %s", tid, exc)
                fatal = replace(batch.report(), fatal=True, error=str(exc))
                self.reporter.send(tid, "TASK_FAILED", fatal, message=str(exc))
                return
            except ModelCrashed as exc:
                # What arrived is kept; the batch is retried from there in a new process.
                self._flush(store, batch)
                log.warning("batch %s: %s", tid, exc)
                self.reporter.send(tid, "TASK_FAILED", batch.report(), message=str(exc))
                return
        self._flush(store, batch)
        progress.elapsed = time.perf_counter() - t0
        self.reporter.send(tid, "TASK_FINISHED", batch.report())

    def _collector(self, store: Store, start: int) -> BlockCollector:
        """The batch's block collector; a batch that starts inside a block (a retry)
        reads the block's earlier rows back from the store."""
        assert self._blocks is not None
        first, _ = self._blocks.block_range(start // self._blocks.block_size)
        if first == start:
            return BlockCollector(self._blocks, start)
        run_id = self.config.run_id
        earlier = self._retrying(lambda: list(store.iter_results(run_id, first, start)))
        log.info("batch from %d starts inside a block: its %d earlier rows were read back",
                 start, len(earlier))  # fmt: skip
        return BlockCollector(self._blocks, start, earlier)

    def _flush(self, store: Store, batch: _Batch) -> None:
        """Store the batch's rows, then the partials of the blocks they complete."""
        buf, blocks = batch.rows, batch.done
        if buf:
            self._retrying(lambda: store.write_results(self.config.run_id, buf), batch.task_id)
        for block, partial in blocks:
            data = partial.to_dict()
            self._retrying(lambda: store.put_partial(self.config.run_id, block, data),  # noqa: B023
                           batch.task_id)  # fmt: skip
            batch.unreported[str(block)] = data
        batch.stored()

    def _retrying(self, call: Any, task_id: str | None = None) -> Any:
        """``call()``, retried with backoff while the store refuses; given up at once when
        the executor is stopping or ``task_id`` was killed (a run that ended has dropped
        the role these calls use: they would be refused to the end)."""
        for delay in (*_STORE_RETRIES, None):
            try:
                return call()
            except AnchoError:
                wanted = not self._stopping.is_set() and task_id not in self._cancelled
                if delay is None or not wanted:
                    raise
                log.warning("store call failed; retrying in %.1f s", delay, exc_info=True)
                self._stopping.wait(delay)
        return None

    def when_done(self, callback: Any) -> None:
        """Call ``callback`` once the loop has ended (now, if it has)."""
        with self._lock:
            self._on_done = callback
            ended = self._ended
        if ended:
            callback()


@dataclass(slots=True)
class _Batch:
    """A running batch: rows not yet stored, completed blocks, what the scheduler has not
    been told. ``progress`` counts only what is stored."""

    task_id: str
    progress: BatchReport
    collector: BlockCollector
    rows: list[SequenceResult] = field(default_factory=list)
    done: list[tuple[int, BlockPartial]] = field(default_factory=list)
    unreported: dict[str, Any] = field(default_factory=dict)

    def add(self, result: SequenceResult) -> None:
        self.rows.append(result)
        block = self.collector.add(result)
        if block is not None:
            self.done.append(block)

    def stored(self) -> None:
        """The rows and blocks taken so far are in the store."""
        if self.rows:
            ok = sum(1 for r in self.rows if r.status == "ok")
            self.progress.ok += ok
            self.progress.failed += len(self.rows) - ok
            self.progress.next = self.rows[-1].sequence + 1
        self.rows, self.done = [], []

    def report(self) -> BatchReport:
        """What the status update carries: progress and the stored blocks' partials."""
        return replace(self.progress, partials=dict(self.unreported))

    def reported(self) -> None:
        self.unreported.clear()


def requirements_file(model: dict[str, Any], model_dir: Path) -> Path | None:
    """The model's requirements: as the spec names them, else the folder's
    ``requirements.txt`` when it has one (``"requirements": null`` turns that off)."""
    if "requirements" in model:
        name = model["requirements"]
        return model_dir / name if name else None
    default = model_dir / "requirements.txt"
    return default if default.is_file() else None


def _scratch_dir() -> Path:
    """The model's own folder, in this executor's sandbox (or a private temporary one).

    It outlives a model process that dies: the next one in this executor finds it.
    """
    sandbox = os.environ.get("MESOS_SANDBOX")
    base = Path(sandbox) if sandbox else Path(tempfile.mkdtemp(prefix="ancho-model-"))
    return base / "scratch"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AnchoError):
        return exc.format_message()
    return f"{type(exc).__name__}: {exc}"
