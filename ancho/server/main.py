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
from collections.abc import Callable
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
    #: ``zk://HOSTS/PATH`` to elect the scheduling server among several (``--zk``).
    zk: str | None = None


#: How often a leader elected through ZooKeeper looks for runs stored by a standby.
ADOPT_EVERY_S = 1.0


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
    """Run until SIGTERM/SIGINT; print the URL on stdout's first line.

    Without ``--zk`` the scheduler starts before the API answers. With it, the API
    answers at once and the scheduler starts when ZooKeeper elects this server
    (:mod:`.leadership`); a server that stops leading exits with code 1.
    """
    from waitress.server import create_server

    from scheduler.summary_job import SummaryJob

    from ..embedded.docker_containerizer import share_with_containers
    from ..recompute import recompute_outputs
    from .leadership import Leadership

    host, port = parse_bind(options.bind)
    if options.zk is not None and options.master == "embedded":
        raise AnchoError(
            "--zk needs a Mesos master (--master HOST:PORT or zk://HOSTS/mesos): the"
            " embedded cluster lives and dies with one server, so no other could take over"
        )
    work_dir = options.work_dir.resolve()
    store = RoutingStore(open_store(options.store_url))
    if not any(not u.revoked for u in store.list_users()):
        log.warning("no users yet: create one with `ancho user add NAME --store %s`", store.url)
    share_with_containers(work_dir / "cache-docker")
    job = SummaryJob(store, options.spark_master, work_dir=work_dir,
                     cache_dir=work_dir / "cache")  # fmt: skip
    max_mb = os.environ.get("ANCHO_MAX_UPLOAD_MB")
    context = ServerContext(
        store=store,
        recompute=lambda run: recompute_outputs(store, run, job),
        max_upload_bytes=int(float(max_mb) * 2**20) if max_mb else DEFAULT_MAX_UPLOAD_BYTES,
        leading=False,
    )
    scheduling = _Scheduler(options, store, work_dir, job, context)
    server: Any = None
    stop = threading.Event()
    exit_code = 0

    def step_down(why: str) -> None:
        nonlocal exit_code
        if stop.is_set():
            return
        log.error("%s: this server stops scheduling and exits (run it under a supervisor"
                  " that starts it again; it comes back as a standby)", why)  # fmt: skip
        exit_code = 1
        stop.set()
        if server is not None:
            server.close()

    leadership: Leadership | None = None
    try:
        if options.zk is None:
            master = scheduling.start(on_superseded=step_down)
        server = create_server(create_app(context), host=host, port=port,
                               threads=options.threads, send_bytes=1,
                               channel_timeout=300, ident="ancho")  # fmt: skip
        bound = getattr(server, "effective_port", port)
        url = f"http://{host}:{bound}"
        if options.zk is not None:
            master = options.master
            leadership = Leadership(options.zk, url, lambda: scheduling.start(step_down),
                                    step_down)  # fmt: skip
            leadership.start()
        sys.stdout.write(f"ancho server listening on {url} (master {master})\n")
        sys.stdout.flush()

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
        scheduling.stop()  # before withdrawing: the next leader finds the framework free
        if leadership is not None:
            leadership.stop()
        job.close()
        store.close()
    if exit_code:
        sys.exit(exit_code)


class _Scheduler:
    """The scheduler half of a server: started at once, or when elected."""

    def __init__(self, options: ServerOptions, store: RoutingStore, work_dir: Path,
                 job: Any, context: ServerContext) -> None:  # fmt: skip
        # Here, in the main thread: importing pymesos installs a SIGINT handler, which
        # only the main thread may (the elected scheduler starts in another).
        from scheduler.service import SchedulerService

        self._service_class = SchedulerService
        self.options, self.store, self.work_dir, self.job = options, store, work_dir, job
        self.context = context
        self.service: Any = None
        self.cluster: Any = None
        self._lock = threading.Lock()
        self._stopped = False

    def start(self, on_superseded: Callable[[str], None]) -> str:
        """Start the driver, resume the stored runs, and give the API the scheduler;
        the master's address."""
        from scheduler.credentials import RunCredentials
        from scheduler.service import config_from_env

        from ..runner import executor_launch

        options = self.options
        with self._lock:
            if self._stopped:
                return options.master
            master = options.master
            local = master == "embedded"
            if local:
                master = self._start_embedded()
            # Each run's role is made with the admin's: the owner's cannot make roles.
            roles = RunCredentials(self.store.url_for_run, self.store.admin)
            launch = executor_launch(local, self.work_dir, self.store.url_for_run, roles)
            principal, secret = options.credential or (None, None)
            service = self._service_class(
                self.store, master, launch, self.job, config_from_env(),
                principal=principal, secret=secret,
                adopt_every_s=ADOPT_EVERY_S if options.zk else None,
            )  # fmt: skip
            service.framework.on_superseded = lambda message: on_superseded(
                f"the Mesos master says {message!r}: another scheduler subscribed with"
                " this server's FrameworkID"
            )
            self.service = service
            service.start(resuming=True)
            resumed = service.resume_active()
            if resumed:
                log.info("resumed %d unfinished runs: %s", len(resumed), ", ".join(resumed))
            self.context.submit = service.submit
            self.context.kill = service.kill
            self.context.scheduler_stats = service.framework.stats
            self.context.leading = True
            return master

    def _start_embedded(self) -> str:
        from ..embedded import EmbeddedCluster
        from ..embedded.containerizer import ProcessContainerizer
        from ..embedded.docker_containerizer import DockerContainerizer

        containerizers = (ProcessContainerizer(), DockerContainerizer())
        # With credentials the embedded master requires them, as a master started
        # with --authenticate_http_frameworks and a credentials file holding them.
        credential = self.options.credential
        credentials = dict([credential]) if credential else None
        self.cluster = EmbeddedCluster(
            self.work_dir / "mesos", containerizers=containerizers, credentials=credentials
        )
        return str(self.cluster.start())

    def stop(self) -> None:
        """Stop the driver with failover (the master keeps the framework) and the
        embedded cluster, if any; no start after this."""
        with self._lock:
            self._stopped = True
            self.context.leading = False
            if self.service is not None:
                self.service.stop(failover=True)
            if self.cluster is not None:
                self.cluster.stop()
