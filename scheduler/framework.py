"""The pymesos edge of the scheduler: callbacks become events, commands become calls.

Every decision lives in :class:`~scheduler.state.SchedulerState`; this class only
translates Mesos JSON to events, and carries out the commands that come back: calls
to the master through the pymesos driver, writes to the store, and the summary job.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pymesos import Scheduler, decode_data, encode_data

from ancho import messages
from ancho.errors import AnchoError
from ancho.messages import BatchReport
from ancho.partials import BlockPartial
from ancho.results import SequenceResult
from ancho.store import BatchRecord, Store

from .credentials import ASK_SCHEDULER, RunCredentials
from .events import (
    AgentLost,
    CheckStored,
    Command,
    CommandFailed,
    CredentialAsked,
    Decline,
    Event,
    ExecutorLost,
    ForgetBatch,
    FrameworkRemoved,
    KillTask,
    Launch,
    Log,
    Offer,
    Offers,
    PutLive,
    Range,
    Reconcile,
    RefuseCredential,
    Revive,
    RevokeCredential,
    RunInfo,
    SaveBatch,
    SendCredential,
    StartSummary,
    StopExecutor,
    StoreChecked,
    Subscribed,
    SummaryDone,
    Suppress,
    TaskLaunch,
    TaskStatus,
    UpdateRun,
    WriteFailed,
)
from .outbox import STORE_WRITES
from .state import PREFETCH, TASK_CPUS, TASK_MEM_MB, SchedulerState
from .summaries import SummaryOutcome, summarize_from_partials

log = logging.getLogger("ancho.scheduler")

#: Where Mesos' Docker containerizer mounts the sandbox.
DOCKER_SANDBOX = "/mnt/mesos/sandbox"


#: ``job(run_id, store_url)`` -> (the custom summary, why it failed or None).
CustomSummaryJob = Callable[[str, str], tuple[dict[str, Any], str | None]]


@dataclass(slots=True, frozen=True)
class ExecutorLaunch:
    """How executors are started: the command and the environment they get."""

    command: str
    environment: dict[str, str]
    #: The run owner's store URL (with the owner's role): never given to executors as is.
    store_url_for: Callable[[str], str]
    #: A folder on every agent that Docker executors share as their cache (models,
    #: requirements); without one each container caches in its sandbox.
    docker_cache_dir: str | None = None
    #: Issues each run's own store credential (default: roles made with the
    #: framework's store, which must then be allowed to create them).
    credentials: RunCredentials | None = None


#: ``docker run`` flags (DockerInfo.parameters) that confine an executor's container.
#: Docker's default seccomp profile forbids the user and PID namespaces the executor
#: builds the model's sandbox from (ancho.sandbox); the executor runs without it, with
#: no new privileges, and the model under a stricter filter of ours. Mesos passes no
#: ``--user``: the image starts as root, and the agent gives the sandbox (0750) to
#: FrameworkInfo.user, whose uid the framework cannot know. ``CAP_SETUID``/``CAP_SETGID``
#: are the only capabilities, for the executor to become the sandbox's owner before
#: anything else (ancho.sandbox.identity); it holds none afterwards.
SANDBOX_PARAMETERS = (
    ("read-only", "true"),
    ("cap-drop", "ALL"),
    ("cap-add", "SETUID"),
    ("cap-add", "SETGID"),
    ("security-opt", "no-new-privileges"),
    ("security-opt", "seccomp=unconfined"),
    ("pids-limit", "512"),
)


def docker_container(run: RunInfo, store_url: str, cache_dir: str | None) -> dict[str, Any]:
    """The ContainerInfo of a Docker executor: image, network, volumes, hardening.

    The executor needs the host network (agent, store, model sources); model code does
    not get it (see ancho.sandbox). Volumes: a local model folder read-only, an SQLite
    store's folder and the agents' shared cache read-write, each at its host path.
    """
    volumes = [{"host_path": m, "container_path": m, "mode": "RO"} for m in run.mounts]
    if store_url.startswith("sqlite:///"):
        folder = str(Path(store_url.removeprefix("sqlite://")).parent)
        volumes.append({"host_path": folder, "container_path": folder, "mode": "RW"})
    if cache_dir:
        volumes.append({"host_path": cache_dir, "container_path": cache_dir, "mode": "RW"})
    parameters = [{"key": k, "value": v} for k, v in SANDBOX_PARAMETERS]
    return {
        "type": "DOCKER",
        "docker": {"image": run.image, "network": "HOST", "parameters": parameters},
        "volumes": volumes,
    }


def _scalar(name: str, value: float) -> dict[str, Any]:
    return {"name": name, "type": "SCALAR", "scalar": {"value": round(value, 6)}, "role": "*"}


def _resources(resources: list[dict[str, Any]]) -> tuple[float, float]:
    cpus = mem = 0.0
    for r in resources:
        if r.get("type", "SCALAR") == "SCALAR" and r.get("role", "*") in ("*", None):
            if r.get("name") == "cpus":
                cpus += float(r["scalar"]["value"])
            elif r.get("name") == "mem":
                mem += float(r["scalar"]["value"])
    return cpus, mem


class AnchoFramework(Scheduler):  # type: ignore[misc]
    """A pymesos Scheduler around the pure state machine."""

    def __init__(
        self,
        store: Store,
        state: SchedulerState,
        launch: ExecutorLaunch,
        custom_summary: CustomSummaryJob | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.state = state
        self.launch = launch
        #: Runs a model's custom ``summarize`` (Spark): ``custom_summary(run_id, store_url)``
        #: with the run's own credential in the URL. None: custom summaries are refused.
        self.custom_summary = custom_summary
        self.credentials = launch.credentials or RunCredentials(launch.store_url_for, store)
        self._fallbacks_logged: set[str] = set()
        self.clock = clock
        self.driver: Any = None
        self.framework_id: str | None = None
        self.connected = threading.Event()
        #: Called with the FrameworkID of each registration (the service stores it).
        self.on_framework_id: Callable[[str], None] = lambda framework_id: None
        #: Called when another scheduler subscribed with our FrameworkID (the master
        #: sent "Framework failed over"): this one must step down, not subscribe again.
        self.on_superseded: Callable[[str], None] = lambda message: None
        self.stopping = False
        self._lock = threading.RLock()
        self.counters = {"offers_declined": 0, "offers_accepted": 0, "subscriptions": 0}
        #: The FrameworkID the master removed, if it did (the service tells resumed runs).
        self.removed_framework: str | None = None
        self._held: list[tuple[Any, dict[str, Any]]] | None = None

    def stats(self) -> dict[str, float]:
        """Figures for metrics: executors held, offers declined and accepted."""
        with self._lock:
            executors = sum(len(run.executors) for run in self.state.runs.values())
            return {"executors_running": executors, **self.counters}

    # --- the one way in -------------------------------------------------------------
    def handle(self, event: Event) -> bool:
        """Feed an event to the state machine and carry out its commands, in order.

        A command that fails goes back to the state machine as a CommandFailed event
        (which retries it or undoes what it meant). Once a store write has failed, the
        writes after it are not tried: they fail with it, so that retrying keeps their
        order. True when every command was carried out.
        """
        with self._lock:
            pending: list[Event] = [event]
            clean = True
            while pending:
                failures = self._carry_out(self.state.handle(pending.pop(0)))
                clean = clean and not failures
                pending.extend(failures)
            return clean

    def _carry_out(self, commands: list[Command]) -> list[Event]:
        failures: list[Event] = []
        store_error: str | None = None
        for command in commands:
            if store_error is not None and isinstance(command, STORE_WRITES):
                failures.append(CommandFailed(command, store_error, self.clock()))
                continue
            try:
                self._execute(command)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                level = logging.WARNING if isinstance(exc, AnchoError | RuntimeError) else None
                if level is None:
                    log.exception("%s failed", type(command).__name__)
                else:
                    log.warning("%s not carried out: %s", type(command).__name__, error)
                if isinstance(command, STORE_WRITES):
                    store_error = error
                failures.append(CommandFailed(command, error, self.clock()))
        return failures

    # --- pymesos callbacks ------------------------------------------------------------
    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        """First subscription (the service stores the FrameworkID for a restart)."""
        self.driver = driver
        self.framework_id = framework_id["value"]
        log.info("registered as framework %s", self.framework_id)
        self.counters["subscriptions"] += 1
        self.on_framework_id(self.framework_id)
        self.connected.set()
        self.handle(Subscribed(self.clock()))

    def reregistered(self, driver: Any, master_info: Any) -> None:
        """Re-subscription within the failover timeout: reconcile what is in flight."""
        self.driver = driver
        self.framework_id = driver.framework_id
        log.info("re-registered with master as framework %s", self.framework_id)
        self.counters["subscriptions"] += 1
        self.connected.set()
        self.handle(Subscribed(self.clock(), reregistered=True))

    def disconnected(self, driver: Any) -> None:
        """The stream dropped; pymesos reconnects by itself."""
        self.connected.clear()
        log.log(logging.INFO if self.stopping else logging.WARNING, "disconnected from master")

    def resourceOffers(self, driver: Any, offers: list[dict[str, Any]]) -> None:
        """Offers become one event."""
        parsed = []
        for o in offers:
            cpus, mem = _resources(o.get("resources", []))
            parsed.append(
                Offer(o["id"]["value"], o["agent_id"]["value"], o.get("hostname", ""), cpus, mem)
            )
        self.handle(Offers(tuple(parsed), self.clock()))

    def hold_updates(self) -> None:
        """Keep status updates back until :meth:`release_updates`: while a restarted
        scheduler has not yet loaded its stored runs, an update of one of their tasks
        would look like a stranger's (its executor stopped, its end acknowledged and
        so forgotten by the master, its batch then reported gone and run again)."""
        with self._lock:
            if self._held is None:
                self._held = []

    def release_updates(self) -> None:
        """Handle the updates held back, in their order, and stop holding."""
        with self._lock:
            held, self._held = self._held or [], None
            for driver, status in held:
                self.statusUpdate(driver, status)

    def statusUpdate(self, driver: Any, status: dict[str, Any]) -> None:
        """A task's state, with the executor's progress report as data."""
        with self._lock:
            if self._held is not None:
                self._held.append((driver, status))
                return
        data = None
        if status.get("data"):
            try:
                data = json.loads(decode_data(status["data"]))
            except ValueError:
                data = None
        report = BatchReport.from_data(data)
        log.debug("update: task %s %s %s (%s) executor %s agent %s", status["task_id"]["value"],
                  status["state"], status.get("reason", ""), status.get("message", ""),
                  status.get("executor_id", {}).get("value", ""),
                  status.get("agent_id", {}).get("value", ""))  # fmt: skip
        partials = _partials(report.partials) if report is not None else ()
        durable = self.handle(
            TaskStatus(
                task_id=status["task_id"]["value"],
                state=status["state"],
                now=self.clock(),
                reason=status.get("reason", ""),
                message=status.get("message", ""),
                report=report,
                executor_id=status.get("executor_id", {}).get("value", ""),
                agent_id=status.get("agent_id", {}).get("value", ""),
                partials=partials,
            )
        )
        # Acknowledged once its effect is stored; otherwise the agent sends it again.
        if durable and status.get("uuid"):
            try:
                driver.acknowledgeStatusUpdate(status)
            except Exception as exc:  # disconnected: the agent sends the update again
                log.warning("status update of task %s not acknowledged: %s",
                            status["task_id"]["value"], exc)  # fmt: skip

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        """An offer was taken back. Ancho answers offers at once, so it holds none; a
        launch on it comes back TASK_DROPPED (REASON_INVALID_OFFERS) and runs again."""
        log.debug("offer %s rescinded", offer_id.get("value"))

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:
        """An executor terminated."""
        code = status if isinstance(status, int) else None
        self.handle(ExecutorLost(executor_id["value"], agent_id["value"], code, self.clock()))

    def slaveLost(self, driver: Any, agent_id: Any) -> None:
        """An agent is gone."""
        self.handle(AgentLost(agent_id["value"], self.clock()))

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:
        """An executor's message: so far only a request for its run's store credential."""
        executor, agent = executor_id["value"], agent_id["value"]
        try:
            message = messages.decode(decode_data(data))
        except ValueError as exc:
            log.warning("framework message from executor %s ignored: %s", executor, exc)
            return
        if isinstance(message, messages.CredentialRequest):
            self.handle(CredentialAsked(message.run_id, executor, agent, self.clock()))
        else:
            log.warning("unexpected %s message from executor %s", message.op, executor)

    def error(self, driver: Any, message: str) -> None:
        """The master refused us. When it has removed the framework (failover timeout,
        teardown by an operator), register a new framework and resubmit the runs."""
        log.error("master error: %s", message)
        if "failed over" in message.lower():
            self.stopping = True  # no re-subscription: that would take the framework back
            driver.stop(failover=True)  # failover: the master keeps the tasks for the other
            self.on_superseded(message)
            return
        if "removed" not in message.lower():
            return
        old = self.framework_id or driver.framework_id or "?"
        log.warning("framework %s was removed by the master: registering a new framework,"
                    " then resubmitting the active runs", old)  # fmt: skip
        self.framework_id = None
        self.removed_framework = old
        driver.forget_framework_id()
        self.handle(FrameworkRemoved(old, self.clock()))

    # --- commands --------------------------------------------------------------------
    def _execute(self, cmd: Command) -> None:
        match cmd:
            case Launch():
                self.counters["offers_accepted"] += 1
                tasks = [self._task_info(cmd.agent_id, t) for t in cmd.tasks]
                self.driver.launchTasks({"value": cmd.offer_id}, tasks, {"refuse_seconds": 1.0})
            case Decline():
                self.counters["offers_declined"] += len(cmd.offer_ids)
                offers = [{"value": o} for o in cmd.offer_ids]
                self.driver.declineOffer(offers, {"refuse_seconds": cmd.refuse_s})
            case Revive():
                self.driver.reviveOffers()
            case Suppress():
                self.driver.suppressOffers()
            case KillTask():
                self.driver.killTask({"value": cmd.task_id})
            case StopExecutor():
                log.debug("stopping executor %s on agent %s", cmd.executor_id, cmd.agent_id)
                if cmd.agent_id:
                    self.driver.sendFrameworkMessage(
                        {"value": cmd.executor_id},
                        {"value": cmd.agent_id},
                        encode_data(messages.Stop().encode()),
                    )
            case Reconcile():
                log.debug("reconciling %s", cmd.tasks or "every task (implicit)")
                self.driver.reconcile(list(cmd.tasks))
            case UpdateRun():
                self.store.update_run(cmd.run_id, **cmd.fields)
            case SaveBatch():
                r = cmd.range
                self.store.put_batch(BatchRecord(cmd.run_id, cmd.key, r.start, r.stop, r.attempt,
                                                 cmd.executor_id, cmd.agent_id))  # fmt: skip
            case ForgetBatch():
                self.store.delete_batch(cmd.run_id, cmd.key)
            case WriteFailed():
                self._write_failed(cmd.run_id, cmd.range, cmd.reason)
            case StartSummary():
                threading.Thread(
                    target=self._summary, args=(cmd,), name="ancho-summary", daemon=True
                ).start()
            case CheckStored():
                threading.Thread(
                    target=self._check_stored, args=(cmd,), name="ancho-check", daemon=True
                ).start()
            case PutLive():
                self.store.put_live(cmd.run_id, cmd.live)
            case Log():
                level = logging.getLevelName(cmd.level.upper())
                log.log(level if isinstance(level, int) else logging.INFO, "run %s: %s",
                        cmd.run_id, cmd.message)  # fmt: skip
                self.store.append_events(cmd.run_id, [("scheduler", cmd.level, cmd.message)])
            case SendCredential():
                url = self.credentials.store_url(cmd.run_id)
                if cmd.run_id in self.credentials.fallbacks:
                    self._log_fallback(cmd.run_id)
                answer = messages.Credential(cmd.run_id, url)
                self._message(cmd.executor_id, cmd.agent_id, answer)
            case RefuseCredential():
                refusal = messages.CredentialRefused(cmd.run_id, cmd.reason)
                self._message(cmd.executor_id, cmd.agent_id, refusal)
            case RevokeCredential():
                self._fallbacks_logged.discard(cmd.run_id)
                self.credentials.revoke(cmd.run_id)

    def _message(self, executor_id: str, agent_id: str, message: messages.Message) -> None:
        self.driver.sendFrameworkMessage(
            {"value": executor_id}, {"value": agent_id}, encode_data(message.encode())
        )

    def _log_fallback(self, run_id: str) -> None:
        if run_id in self._fallbacks_logged:
            return
        self._fallbacks_logged.add(run_id)
        why = (
            "this store's role cannot create a role for the run: its executors use the"
            " owner's credential (sent by framework message only, never in the ExecutorInfo)"
        )
        self.store.append_events(run_id, [("scheduler", "warning", why)])

    def _task_info(self, agent_id: str, t: TaskLaunch) -> dict[str, Any]:
        r = t.range
        data = {"run": t.run_id, "start": r.start, "stop": r.stop, "attempt": r.attempt}
        return {
            "task_id": {"value": t.task_id},
            "agent_id": {"value": agent_id},
            "name": f"ancho {t.run_id} [{r.start}, {r.stop}) attempt {r.attempt}",
            "executor": self.executor_info(t.run, t.executor_id),
            "resources": [_scalar("cpus", TASK_CPUS), _scalar("mem", TASK_MEM_MB)],
            "data": encode_data(json.dumps(data).encode()),
        }

    def executor_info(self, run: RunInfo, executor_id: str) -> dict[str, Any]:
        """The ExecutorInfo of one executor of a run (identical for each of its tasks)."""
        # Mesos shows an ExecutorInfo, environment included, in /master/state: the store
        # URL goes without its credential, which executors ask for (framework messages).
        public, ask = self.credentials.public_url(run.run_id)
        env = {
            **self.launch.environment,
            "ANCHO_RUN_ID": run.run_id,
            "ANCHO_STORE": public,
            "ANCHO_MODEL_NETWORK": run.network,
            "ANCHO_MODEL_MEM_MB": str(run.mem_mb),
        }
        if ask:
            env["ANCHO_STORE_CREDENTIAL"] = ASK_SCHEDULER
        info: dict[str, Any] = {
            "executor_id": {"value": executor_id},
            "name": f"ancho executor for run {run.run_id}",
            "source": run.run_id,
            "command": {
                "value": self.launch.command,
                "shell": True,
                "environment": {
                    "variables": [{"name": k, "value": v} for k, v in sorted(env.items())]
                },
            },
            "resources": [
                _scalar("cpus", run.cpus - PREFETCH * TASK_CPUS),
                _scalar("mem", run.mem_mb - PREFETCH * TASK_MEM_MB),
            ],
        }
        if run.containerizer == "docker":
            # The image's entrypoint is ancho-executor.
            cache = self.launch.docker_cache_dir
            env["ANCHO_CACHE_DIR"] = cache or f"{DOCKER_SANDBOX}/cache"
            info["command"] = {
                "shell": False,
                "environment": {
                    "variables": [{"name": k, "value": v} for k, v in sorted(env.items())]
                },
            }
            info["container"] = docker_container(run, env["ANCHO_STORE"], cache)
        if self.framework_id:
            info["framework_id"] = {"value": self.framework_id}
        return info

    def _write_failed(self, run_id: str, rng: Range, reason: str) -> None:
        error = {"type": "BatchFailed", "message": reason, "traceback": ""}
        step = 10_000
        for lo in range(rng.start, rng.stop, step):
            rows = [
                SequenceResult(i, "failed", {}, error, rng.attempt, 0.0)
                for i in range(lo, min(lo + step, rng.stop))
            ]
            self.store.write_results(run_id, rows)

    def _check_stored(self, cmd: CheckStored) -> None:
        """Count the run's stored results; when some are missing, find which."""
        try:
            counts = self.store.count_results(cmd.run_id)
            stored = counts.ok + counts.failed
            missing: tuple[Range, ...] = ()
            if stored != cmd.sequences:
                indices = (r.sequence for r in self.store.iter_results(cmd.run_id))
                missing = missing_ranges(indices, cmd.sequences)
            checked = StoreChecked(cmd.run_id, stored, missing, self.clock())
        except Exception as exc:
            checked = StoreChecked(cmd.run_id, 0, (), self.clock(), f"{type(exc).__name__}: {exc}")
        self.handle(checked)

    def _summary(self, cmd: StartSummary) -> None:
        run_id = cmd.run_id
        try:
            outcome = summarize_from_partials(
                self.store, run_id, cmd.partials, stopped=cmd.stopped,
                has_targets=cmd.has_targets, custom=self._custom,
            )  # fmt: skip
        except Exception as exc:
            if isinstance(exc, AnchoError):
                log.warning("summary of run %s failed: %s", run_id, exc)
            else:
                log.exception("summary of run %s failed", run_id)
            ok, failed = cmd.partials.prefix.ok, cmd.partials.prefix.failed
            outcome = SummaryOutcome(ok, failed, f"{type(exc).__name__}: {exc}")
        self.handle(SummaryDone(run_id, outcome.ok, outcome.failed, self.clock(), outcome.error))

    def _custom(self, run_id: str) -> tuple[dict[str, Any], str | None]:
        """The run's custom summary, from the Spark worker."""
        from ancho.extras import missing_modules

        if self.custom_summary is None or missing_modules("spark"):
            why = "custom summaries need Spark: this scheduler runs without the 'spark' extra"
            return {"error": why}, why
        try:
            return self.custom_summary(run_id, self.credentials.store_url(run_id))
        except Exception as exc:  # the worker died: the built-in summary still stands
            log.warning("custom summary of run %s failed: %s", run_id, exc)
            why = f"custom summary: {exc}"
            return {"error": why}, why


def missing_ranges(indices: Any, sequences: int) -> tuple[Range, ...]:
    """The ranges of ``0..sequences-1`` absent from ``indices`` (ascending)."""
    out: list[Range] = []
    expected = 0
    for index in indices:
        if index > expected:
            out.append(Range(expected, min(index, sequences)))
        expected = max(expected, index + 1)
    if expected < sequences:
        out.append(Range(expected, sequences))
    return tuple(r for r in out if len(r) > 0)


def _partials(data: Any) -> tuple[tuple[int, BlockPartial], ...]:
    """The block partials an executor sent with a status update (bad ones are dropped:
    the summary then reads that block from the store)."""
    if not isinstance(data, dict):
        return ()
    out = []
    for block, partial in data.items():
        try:
            out.append((int(block), BlockPartial.from_dict(partial)))
        except (KeyError, TypeError, ValueError):
            log.warning("a malformed partial of block %r was dropped", block)
    return tuple(sorted(out, key=lambda item: item[0]))
