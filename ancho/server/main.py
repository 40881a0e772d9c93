"""``ancho server``: the scheduler (one pymesos driver) and the REST API in one process.

The API is served by waitress (a production WSGI server: one process, a thread pool).
SIGTERM or SIGINT stops the API, then stops the driver with failover: the master keeps
the framework and its tasks, and a restarted server re-subscribes with the stored
framework ID and carries on the runs (with the embedded master, which ends with this
process, the restart resubmits the unfinished runs from the store).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AnchoError
from ..store import open_store
from .app import create_app
from .context import DEFAULT_MAX_UPLOAD_BYTES, ServerContext
from .stores import RoutingStore

log = logging.getLogger("ancho.server")


@dataclass(slots=True, frozen=True)
class ServerOptions:
    """``ancho server`` flags."""

    master: str = "embedded"
    store_url: str | None = None
    bind: str = "127.0.0.1:8080"
    work_dir: Path = Path(".ancho")
    threads: int = 32
    #: (principal, secret) for Mesos framework authentication (``--principal``/``--secret-file``).
    credential: tuple[str, str] | None = None
    #: Where the Spark worker's jobs run (``--spark-master``, ``ANCHO_SPARK_MASTER``).
    spark_master: str = "local[*]"


def mesos_credential(principal: str | None, secret_file: str | None) -> tuple[str, str] | None:
    """The (principal, secret) to authenticate to Mesos with, or None without both flags.

    The secret is the file's content without its trailing newline. HTTP Basic
    authentication as Mesos checks it cannot carry a colon in either, nor (through
    pymesos) anything but ASCII, so those are refused here rather than by the master.
    """
    if principal is None and secret_file is None:
        return None
    if principal is None or secret_file is None:
        flags = ("--principal", "--secret-file")
        given, missing = flags[::-1] if principal is None else flags
        raise AnchoError(
            f"{given} needs {missing} too (or ANCHO_MESOS_PRINCIPAL and"
            " ANCHO_MESOS_SECRET_FILE): Mesos authenticates a framework by both"
        )
    try:
        secret = Path(secret_file).read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise AnchoError(
            f"--secret-file {secret_file} (ANCHO_MESOS_SECRET_FILE): cannot read the Mesos"
            f" secret: {reason}"
        ) from None
    if not secret:
        raise AnchoError(f"--secret-file {secret_file}: the Mesos secret file is empty")
    for flag, value in (("--principal", principal), ("--secret-file", secret)):
        if ":" in value or not value.isascii():
            raise AnchoError(
                f"{flag}: a Mesos principal or secret must be ASCII without ':'"
                " (HTTP Basic authentication cannot carry it)"
            )
    if not principal:
        raise AnchoError("--principal: must not be empty")
    return principal, secret


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: any free one)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise AnchoError(f"--bind {bind!r}: must look like HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def serve(options: ServerOptions) -> None:
    """Run until SIGTERM/SIGINT; print the URL on stdout's first line."""
    from waitress.server import create_server

    from scheduler.credentials import RunCredentials
    from scheduler.service import SchedulerService, config_from_env
    from scheduler.summary_job import SummaryJob

    from ..embedded.docker_containerizer import share_with_containers
    from ..recompute import recompute_outputs
    from ..runner import executor_launch

    host, port = parse_bind(options.bind)
    work_dir = options.work_dir.resolve()
    store = RoutingStore(open_store(options.store_url))
    if not any(not u.revoked for u in store.list_users()):
        log.warning("no users yet: create one with `ancho user add NAME --store %s`", store.url)
    cluster: Any = None
    master = options.master
    local = master == "embedded"
    if local:
        from ..embedded import EmbeddedCluster
        from ..embedded.containerizer import ProcessContainerizer
        from ..embedded.docker_containerizer import DockerContainerizer

        containerizers = (ProcessContainerizer(), DockerContainerizer())
        # With credentials the embedded master requires them, as a master started
        # with --authenticate_http_frameworks and a credentials file holding them.
        credentials = dict([options.credential]) if options.credential else None
        cluster = EmbeddedCluster(
            work_dir / "mesos", containerizers=containerizers, credentials=credentials
        )
        master = cluster.start()
    docker_cache = work_dir / "cache-docker"
    share_with_containers(docker_cache)
    job = SummaryJob(store, options.spark_master, work_dir=work_dir,
                     cache_dir=work_dir / "cache")  # fmt: skip
    # Each run's role is made with the admin's: the owner's role cannot make roles.
    roles = RunCredentials(store.url_for_run, store.admin)
    launch = executor_launch(local, work_dir, store.url_for_run, roles)
    principal, secret = options.credential or (None, None)
    service = SchedulerService(store, master, launch, job, config_from_env(),
                               principal=principal, secret=secret)  # fmt: skip
    try:
        service.start()
        resumed = service.resume_active()
        if resumed:
            log.info("resumed %d unfinished runs: %s", len(resumed), ", ".join(resumed))
        max_mb = os.environ.get("ANCHO_MAX_UPLOAD_MB")
        context = ServerContext(
            store=store,
            submit=service.submit,
            kill=service.kill,
            scheduler_stats=service.framework.stats,
            recompute=lambda run: recompute_outputs(store, run, job),
            max_upload_bytes=int(float(max_mb) * 2**20) if max_mb else DEFAULT_MAX_UPLOAD_BYTES,
        )
        server = create_server(create_app(context), host=host, port=port,
                               threads=options.threads, send_bytes=1,
                               channel_timeout=300, ident="ancho")  # fmt: skip
        bound = getattr(server, "effective_port", port)
        sys.stdout.write(f"ancho server listening on http://{host}:{bound} (master {master})\n")
        sys.stdout.flush()
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping (the framework fails over)", signum)
            stop.set()
            server.close()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            server.run()
        except (OSError, ValueError):
            if not stop.is_set():
                raise
    finally:
        service.stop(failover=True)
        job.close()
        if cluster is not None:
            cluster.stop()
        store.close()
