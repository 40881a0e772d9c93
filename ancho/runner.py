"""``ancho run``: one run on this machine, through the embedded Mesos cluster.

The code path is the cluster's: a pymesos scheduler subscribes to the embedded master,
accepts offers and launches ``ancho-executor`` processes through the embedded agent;
executors write every sequence and a partial summary of each block to the store; the
summary is the merge of the partials. Spark starts only for a model's custom summary.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from .errors import StoreError
from .progress import ProgressBar
from .spec import RunSpec
from .store import TERMINAL_STATES, RunRecord, RunState, Store

if TYPE_CHECKING:
    from scheduler.credentials import RunCredentials
    from scheduler.framework import ExecutorLaunch
    from scheduler.service import SchedulerService

log = logging.getLogger("ancho.run")


def new_run(spec: RunSpec, owner: str = "local") -> RunRecord:
    """A fresh QUEUED run record for a validated spec."""
    return RunRecord(
        id=uuid.uuid4().hex[:12],
        name=spec.name,
        spec=spec.to_dict(),
        seed=spec.seed,
        sequences=spec.sequences,
        owner=owner,
        created_at=time.time(),
    )


#: What executors get of the environment of the process that starts them. As on a Mesos
#: agent, an executor inherits nothing (only the agent's MESOS_*/LIBPROCESS_* variables,
#: Mesos' default PATH and its CommandInfo's environment), so what it needs of the
#: operator's environment goes in the CommandInfo, by name — the part a Mesos agent's
#: ``--executor_environment_variables`` plays. Only what changes how an executor reaches
#: its sources and store, and how it runs:
#:
#: * trust and proxies: the CA files Python's ssl, pip and git read, Ancho's extra CA
#:   (``ANCHO_CA_BUNDLE``), and the proxy variables in either case;
#: * ``PIP_*``: the index, extra indexes, trusted hosts, pip's CA (``PIP_CERT``) for a
#:   model's requirements (the executor drops those that would move pip's writes);
#: * ``AWS_*``: credentials and endpoint for ``s3://`` models;
#: * ``ANCHO_SANDBOX_*``: the operator's sandbox settings (``ANCHO_SANDBOX_ALLOW_WEAKER``,
#:   limits); ``ANCHO_FLUSH_*``, ``ANCHO_PROGRESS_S`` and the idle and credential
#:   timeouts: the executor's own tuning (``executor/config.py`` reads them);
#: * the thread counts of numeric libraries (``OMP_*``, ``OPENBLAS_*``, ``MKL_*``,
#:   ``NUMEXPR_*``), which the executor hands on to the model's process.
#:
#: Left out on purpose: ``PATH`` (the executor is started by absolute path, and Mesos'
#: default PATH finds git; a host PATH would also shadow a Docker image's), ``HOME`` (the
#: passwd entry gives it; a model gets a scratch HOME anyway), ``PYTHON*`` (a host
#: PYTHONPATH would change what the executor imports), locale and ``TZ`` (a sequence's
#: outputs must not depend on the machine; Python 3.11 reads and writes UTF-8 in the C
#: locale), and any other ``ANCHO_*`` (``ANCHO_STORE``, ``ANCHO_TOKEN``: the framework
#: sets an executor's store and credential per run).
PASSTHROUGH_NAMES = frozenset(
    {
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
        "ANCHO_CA_BUNDLE", "ANCHO_FLUSH_ROWS", "ANCHO_FLUSH_S", "ANCHO_PROGRESS_S",
        "ANCHO_IDLE_TIMEOUT_S", "ANCHO_CREDENTIAL_TIMEOUT_S",
    }
)  # fmt: skip
#: Proxy variables, matched whatever their case (curl reads lower case, others both).
PROXY_NAMES = frozenset({"http_proxy", "https_proxy", "all_proxy", "no_proxy"})
PASSTHROUGH_PREFIXES = ("AWS_", "ANCHO_SANDBOX_", "PIP_", "OMP_", "OPENBLAS_", "MKL_", "NUMEXPR_")


def _passed(name: str) -> bool:
    return (
        name in PASSTHROUGH_NAMES
        or name.lower() in PROXY_NAMES
        or name.startswith(PASSTHROUGH_PREFIXES)
    )


def executor_environment(
    cache_dir: Path | None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment every executor gets (see ``PASSTHROUGH_NAMES``), taken from
    ``environ`` (this process' environment by default); ``cache_dir`` only for an
    agent on this machine (otherwise the agent's own ``ANCHO_CACHE_DIR`` holds)."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if _passed(k)}
    env["PYTHONUNBUFFERED"] = "1"
    if cache_dir is not None:
        env["ANCHO_CACHE_DIR"] = str(cache_dir)
    return env


#: How an agent with Ancho installed starts an executor (``ANCHO_EXECUTOR_COMMAND``
#: replaces it, e.g. for an install that is not on the agents' PATH).
AGENT_EXECUTOR_COMMAND = "ancho-executor"


def executor_command(local: bool = True) -> str:
    """How an agent starts an executor. ``local``: the embedded cluster in this process,
    which runs this interpreter, so this install; on a Mesos master, the agent's own
    ``ancho-executor``: the launch names no path of the machine the scheduler runs on."""
    if local:
        return f"{shlex.quote(sys.executable)} -m executor"
    return os.environ.get("ANCHO_EXECUTOR_COMMAND") or AGENT_EXECUTOR_COMMAND


def executor_launch(
    local: bool,
    work_dir: Path,
    store_url_for: Callable[[str], str],
    credentials: RunCredentials | None = None,
) -> ExecutorLaunch:
    """The executors' launch: for the embedded cluster, this install and this machine's
    caches; on a Mesos master, nothing of this machine (``executor_command``; the
    agent's cache; Docker executors cache in their sandbox)."""
    from scheduler.framework import ExecutorLaunch

    return ExecutorLaunch(
        command=executor_command(local),
        environment=executor_environment(work_dir / "cache" if local else None),
        store_url_for=store_url_for,
        docker_cache_dir=str(work_dir / "cache-docker") if local else None,
        credentials=credentials,
    )


def require_extras(spec: RunSpec) -> None:
    """Refuse, before anything is stored, a spec whose runs need an extra not installed."""
    from .extras import require

    if spec.model.summary:
        require("spark", "A custom summary", "Spark (on Java 17) runs the model's summarize.")
    if spec.executor.containerizer == "docker":
        require("docker", "The Docker containerizer")


def run_local(
    spec: RunSpec,
    store: Store,
    *,
    work_dir: Path,
    on_created: Callable[[RunRecord], None] | None = None,
    progress: TextIO | None = None,
    master: str = "embedded",
) -> RunRecord:
    """Run ``spec`` to a terminal state; return the stored run.

    ``master``: ``embedded`` (a one-node cluster in this process), or the Mesos master
    to use (``HOST:PORT`` or ``zk://HOSTS/mesos``, e.g. ``ancho cluster``'s).
    ``on_created(run)`` is called once the run is stored (the CLI prints its id then).
    Ctrl-C kills the run and waits for it to end.
    """
    require_extras(spec)
    run = new_run(spec)
    store.create_run(run)
    if on_created is not None:
        on_created(run)
    run_all(spec, store, [run.id], work_dir=work_dir, progress=progress, master=master)
    return store.get_run(run.id)


def run_all(
    spec: RunSpec,
    store: Store,
    run_ids: list[str],
    *,
    work_dir: Path,
    progress: TextIO | None = None,
    master: str = "embedded",
) -> None:
    """Run stored QUEUED runs (one, or an experiment's) to their ends on one cluster.

    ``spec`` says what the runs need (a custom summary: Spark; Docker); the runs of an
    experiment need the same. The progress bar counts every run's sequences. Ctrl-C
    kills the runs and waits for them to end.
    """
    require_extras(spec)
    custom = bool(spec.model.summary)
    from ancho.embedded import EmbeddedCluster
    from ancho.embedded.containerizer import ProcessContainerizer
    from ancho.embedded.docker_containerizer import DockerContainerizer, share_with_containers
    from scheduler.service import SchedulerService, config_from_env

    work_dir = work_dir.resolve()
    job = None
    if custom:
        from scheduler.summary_job import SummaryJob  # Spark and Arrow: only when needed

        job = SummaryJob(store, "local[*]", work_dir=work_dir, cache_dir=work_dir / "cache")
        if os.environ.get("ANCHO_SPARK_WARMUP", "1") != "0":
            job.warm_up()  # Spark's JVM starts (at low priority) while the sequences run
    docker_cache = work_dir / "cache-docker"  # its Python differs from ours: its own envs
    if spec.executor.containerizer == "docker":
        share_with_containers(docker_cache, *_sqlite_files(store.url))
    launch = executor_launch(master == "embedded", work_dir, lambda _run_id: store.url)
    runs = [store.get_run(run_id) for run_id in run_ids]
    bar = ProgressBar(progress, sum(r.sequences for r in runs)) if progress is not None else None
    try:
        with contextlib.ExitStack() as stack:
            if master == "embedded":
                containerizers = (ProcessContainerizer(), DockerContainerizer())
                cluster = EmbeddedCluster(work_dir / "mesos", containerizers=containerizers)
                master = stack.enter_context(cluster).start()
            service = SchedulerService(store, master, launch, job, config_from_env(), 60.0)
            service.start()
            try:
                for run in runs:
                    service.submit(run)
                _wait(store, run_ids, service, bar)
            finally:
                service.stop(failover=False)
    finally:
        if job is not None:
            job.close()
    if bar is not None:
        bar.close(together([store.get_run(run_id) for run_id in run_ids]))


def together(runs: list[RunRecord]) -> RunRecord:
    """One run's record as is; several as one, for the progress bar: their counts
    summed, RUNNING until every one has ended, then FINISHED if all did."""
    if len(runs) == 1:
        return runs[0]
    states: set[str] = {r.state for r in runs}
    state: RunState
    if not states <= TERMINAL_STATES:
        state = "STAGING" if states <= {"QUEUED", "STAGING"} else "RUNNING"
    else:
        state = "FINISHED" if states == {"FINISHED"} else "FAILED"
    return RunRecord(
        id="+".join(r.id for r in runs), name="", spec={}, seed=runs[0].seed,
        sequences=sum(r.sequences for r in runs), state=state,
        ok=sum(r.ok for r in runs), failed=sum(r.failed for r in runs),
    )  # fmt: skip


def _sqlite_files(url: str) -> list[Path]:
    """An SQLite store's folder and files, which Docker executors write too."""
    if not url.startswith("sqlite:///"):
        return []
    db = Path(url.removeprefix("sqlite://"))
    files = [db.parent, db, *(db.with_name(db.name + x) for x in ("-wal", "-shm"))]
    return [f for f in files if f.exists()]


def _wait(
    store: Store, run_ids: list[str], service: SchedulerService, bar: ProgressBar | None
) -> None:
    killed = False
    patience = float(os.environ.get("ANCHO_STORE_PATIENCE_S", "120"))
    unreachable_since: float | None = None
    while True:
        try:
            try:
                records = [store.get_run(run_id) for run_id in run_ids]
                live = None
                if bar is not None and len(records) == 1 and records[0].state == "RUNNING":
                    live = (store.get_live(run_ids[0]) or {}).get("live")
            except StoreError as exc:
                # A store that restarts comes back; one that does not ends the run here.
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if now - unreachable_since > patience:
                    raise StoreError(
                        f"{exc.message}; unreachable for {patience:.0f} s, so run"
                        f" {', '.join(run_ids)} is abandoned (sequences already stored are"
                        " kept)"
                    ) from None
                time.sleep(1.0)
                continue
            unreachable_since = None
            if bar is not None:
                bar.update(together(records), live)
            if all(r.done for r in records):
                return
            time.sleep(0.2)
        except KeyboardInterrupt:
            if killed:
                raise
            killed = True
            what = "the run" if len(run_ids) == 1 else "the runs"
            sys.stderr.write(f"\ninterrupted: killing {what} (Ctrl-C again to abandon it)\n")
            for run_id in run_ids:
                service.kill(run_id)
