"""The scheduler service: one pymesos driver, the framework, and a ticker thread.

Used by ``ancho run`` (with the embedded cluster) and ``ancho server`` (with a real
master): the same code drives both.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ancho.errors import AnchoError
from ancho.partials import BlockPartial, block_size
from ancho.store import RunRecord, Store
from ancho.users import quotas

from .driver import driver_class
from .events import KillRun, Quotas, Range, RunInfo, Submit, Tick
from .framework import AnchoFramework, CustomSummaryJob, ExecutorLaunch
from .state import SchedulerConfig, SchedulerState
from .summaries import SummaryOutcome

log = logging.getLogger("ancho.scheduler")

TICK_S = 0.5
#: How often users' cpu quotas are read from the store.
QUOTAS_EVERY_S = 5.0


def run_info(run: RunRecord) -> RunInfo:
    """What the state machine needs of a stored run."""
    spec = run.spec
    res = spec.get("resources", {})
    ex = spec.get("executor", {})
    return RunInfo(
        run_id=run.id,
        sequences=run.sequences,
        cpus=float(res.get("cpus", 1.0)),
        mem_mb=int(res.get("mem_mb", 512)),
        max_executors=res.get("max_executors"),
        max_attempts=int(spec.get("max_attempts", 3)),
        timeout_s=spec.get("timeout_s"),
        containerizer=ex.get("containerizer", "process"),
        image=ex.get("image", "ancho/executor:latest"),
        network=ex.get("network", "none"),
        mounts=_local_mounts(spec.get("model", {}).get("source", "")),
        block_size=block_size(run.sequences),
        targets=_targets(spec.get("targets", {})),
        owner=run.owner,
        priority=int(spec.get("priority", 50)),
        created_at=run.created_at,
    )


def _targets(targets: dict[str, dict[str, float]]) -> tuple[tuple[str, str, float], ...]:
    """The spec's targets as (output, kind, bound), in a fixed order."""
    return tuple((output, kind, float(bound)) for output, target in sorted(targets.items())
                 for kind, bound in sorted(target.items()))  # fmt: skip


def _local_mounts(source: str) -> tuple[str, ...]:
    """The host folder of a local model source (a container must see it)."""
    path = Path(source.removeprefix("file://"))
    if "://" in source.removeprefix("file://") or not path.is_absolute():
        return ()
    return (str(path if path.is_dir() else path.parent),)


def config_from_env() -> SchedulerConfig:
    """Knobs: ``ANCHO_BATCH_SIZE`` (fixed), ``ANCHO_BATCH_TARGET_S``, and
    ``ANCHO_UNREACHABLE_GRACE_S`` (how long a task on an unreachable agent is waited for)."""
    fixed = os.environ.get("ANCHO_BATCH_SIZE")
    target = os.environ.get("ANCHO_BATCH_TARGET_S")
    grace = os.environ.get("ANCHO_UNREACHABLE_GRACE_S")
    config = SchedulerConfig(
        fixed_batch=int(fixed) if fixed else None,
        batch_target_s=float(target) if target else 2.0,
    )
    return replace(config, unreachable_grace_s=float(grace)) if grace else config


class SchedulerService:
    """Owns the driver and the framework; submit and kill runs; stop with failover."""

    def __init__(
        self,
        store: Store,
        master: str,
        launch: ExecutorLaunch,
        custom_summary: CustomSummaryJob | None,
        config: SchedulerConfig | None = None,
        failover_timeout_s: float = 7 * 24 * 3600.0,
        *,
        principal: str | None = None,
        secret: str | None = None,
        adopt_every_s: float | None = None,
    ) -> None:
        """``principal``/``secret``: HTTP Basic credentials for a master that requires
        framework authentication; the principal also goes into FrameworkInfo.
        ``adopt_every_s``: how often to look in the store for active runs that this
        service was not given (submitted through a standby server); None: never."""
        from pymesos import MesosSchedulerDriver  # late: pymesos installs a SIGINT handler

        self.store = store
        self.framework = AnchoFramework(store, SchedulerState(config), launch,
                                        custom_summary)  # fmt: skip
        framework_info: dict[str, Any] = {
            "user": getpass.getuser(),
            "name": "ancho",
            "hostname": socket.gethostname(),
            "failover_timeout": failover_timeout_s,
            "checkpoint": True,
        }
        if principal is not None:
            framework_info["principal"] = principal
        known = store.get_meta(f"framework_id:{master}")
        if known:
            framework_info["id"] = {"value": known}
        self.master = master
        self.driver = driver_class(MesosSchedulerDriver)(
            self.framework,
            framework_info,
            master,
            use_addict=False,
            principal=principal,
            secret=secret,
        )
        self.framework.driver = self.driver
        self.framework.on_framework_id = self._remember_framework_id
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="ancho-tick", daemon=True)
        self._adopt_every_s = adopt_every_s
        self._quotas_at = -QUOTAS_EVERY_S
        self._adopted_at = 0.0
        #: Every run submitted to this service (each is submitted once).
        self._known: set[str] = set()
        self._known_lock = threading.Lock()

    def start(self, timeout_s: float = 30.0, *, resuming: bool = False) -> None:
        """Start the driver and wait until the master has accepted the framework.
        ``resuming``: :meth:`resume_active` follows, and status updates wait for it."""
        if resuming:
            self.framework.hold_updates()
        self.driver.start()
        self._ticker.start()
        if not self.framework.connected.wait(timeout_s):
            raise TimeoutError(f"no answer from the Mesos master at {self.master}")

    def _remember_framework_id(self, framework_id: str) -> None:
        """Store the FrameworkID of a (new) registration, for the next start."""
        try:
            self.store.set_meta(f"framework_id:{self.master}", framework_id)
        except AnchoError as exc:
            log.error("FrameworkID %s not stored (a restart registers anew): %s",
                      framework_id, exc)  # fmt: skip

    def submit(self, run: RunRecord) -> None:
        """Schedule a stored run (resuming it if it was in flight before a restart); a
        run this service was given before is left alone."""
        with self._known_lock:
            if run.id in self._known:
                return
            self._known.add(run.id)
        pending: list[Range] = []
        in_flight: list[tuple[str, str, str, Range]] = []
        for b in self.store.list_batches(run.id):
            rng = Range(b.start, b.stop, b.attempt)
            if b.executor_id:
                in_flight.append((b.task_id, b.executor_id, b.agent_id, rng))
            else:
                pending.append(rng)
        resumed = in_flight or pending or run.next_index
        partials: tuple[tuple[int, BlockPartial], ...] = ()
        if resumed:  # what the executors stored before the restart
            stored = self.store.list_partials(run.id)
            partials = tuple((b, BlockPartial.from_dict(d)) for b, d in sorted(stored.items()))
        self.framework.handle(
            Submit(
                run_info(run),
                time.time(),
                next_index=run.next_index,
                pending=tuple(pending),
                in_flight=tuple(in_flight),
                ok=run.ok if resumed else 0,
                failed=run.failed if resumed else 0,
                partials=partials,
            )
        )

    def resume_active(self) -> list[str]:
        """Submit every stored run that has not ended (after a scheduler restart), and
        drop the store roles of runs that ended while no scheduler was there to; then
        handle the status updates held back since :meth:`start`."""
        resumed = []
        try:
            for run in self.store.list_runs():
                if not run.done and run.id not in self._known:
                    self._say_if_framework_removed(run.id)
                    self.submit(run)
                    resumed.append(run.id)
        finally:
            self.framework.release_updates()
        try:
            self.framework.credentials.sweep(lambda run_id: self.store.get_run(run_id).done)
        except AnchoError as exc:
            log.warning("store roles of ended runs not swept: %s", exc)
        return resumed

    def _say_if_framework_removed(self, run_id: str) -> None:
        old, new = self.framework.removed_framework, self.framework.framework_id
        if old is None:
            return
        line = (f"framework {old} was removed by the Mesos master (past its failover timeout):"
                f" Ancho registered a new framework, {new}, and resubmitted this run")  # fmt: skip
        try:
            self.store.append_events(run_id, [("scheduler", "warning", line)])
        except AnchoError as exc:
            log.warning("run %s: %s (not stored: %s)", run_id, line, exc)

    def kill(self, run_id: str) -> None:
        """Kill a run."""
        self.framework.handle(KillRun(run_id, time.time()))

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            now = time.time()
            for run_id in list(self.framework.state.runs):
                try:
                    if self.store.get_run(run_id).kill_requested:
                        self.kill(run_id)
                except AnchoError as exc:  # e.g. the store restarting: try again next tick
                    log.warning("checking run %s for a kill request: %s", run_id, exc)
                except Exception:
                    log.exception("checking run %s for a kill request", run_id)
            self.framework.handle(Tick(now))
            self._watch_heartbeats()
            self._adopt(now)
            self._read_quotas(now)
            try:
                self.framework.credentials.retry_drops()
            except Exception:
                log.exception("dropping store roles of ended runs")

    def _read_quotas(self, now: float) -> None:
        """Users' cpu quotas (``ancho user add|set --max-cpus``), every ``QUOTAS_EVERY_S``."""
        if now - self._quotas_at < QUOTAS_EVERY_S:
            return
        self._quotas_at = now
        try:
            table = quotas(self.store)
        except (AnchoError, ValueError) as exc:
            log.warning("reading users' cpu quotas: %s", exc)
            return
        self.framework.handle(Quotas(tuple(sorted(table.items())), now))

    def _adopt(self, now: float) -> None:
        """Schedule the active runs stored since the last look that nobody gave this
        service: a standby server stores what it is sent and leaves it to the leader."""
        if self._adopt_every_s is None or now - self._adopted_at < self._adopt_every_s:
            return
        self._adopted_at = now
        try:
            runs = [r for r in self.store.list_runs() if not r.done and r.id not in self._known]
            for run in sorted(runs, key=lambda r: r.created_at):
                log.info("run %s was stored by another server: scheduling it", run.id)
                self.submit(run)
        except AnchoError as exc:
            log.warning("looking for runs submitted through other servers: %s", exc)

    def _watch_heartbeats(self) -> None:
        """Subscribe again when the master has been silent for 2 heartbeat intervals: a
        half-open connection shows no error, only silence."""
        driver = self.driver
        if not self.framework.connected.is_set() or self.framework.stopping:
            return
        silent, interval = driver.silent_for(), driver.heartbeat_s
        if silent > 2 * interval:
            log.warning("no event from the master for %.0f s (heartbeat every %g s):"
                        " subscribing again", silent, interval)  # fmt: skip
            driver.resubscribe()

    def stop(self, failover: bool = True) -> None:
        """Stop the driver; with failover the master keeps our tasks for a restart."""
        self._stop.set()
        self.framework.stopping = True
        self.driver.stop(failover=failover)
        self.driver.join()
        if self._ticker.is_alive():
            self._ticker.join(5)


__all__ = ["SchedulerService", "SummaryOutcome", "config_from_env", "run_info"]
