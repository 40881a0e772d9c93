"""``ancho-executor``: what Mesos launches for a run, in a container or a process."""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from .config import ExecutorConfig
from .credentials import StoreCredential
from .runlog import RunLog, RunLogHandler, install

#: How long the end of the executor waits for the model's process, then for the store to
#: take the last log lines (well inside Mesos' default shutdown grace period of 5 s).
_WORKER_EXIT_S = 2.0
_LOG_EXIT_S = 2.5


def main() -> None:
    """Run the executor until the agent shuts it down or it goes idle."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = ExecutorConfig.from_env()
    except (KeyError, ValueError) as exc:
        sys.stderr.write(f"ancho-executor: missing or bad environment: {exc}\n")
        raise SystemExit(2) from None
    log = logging.getLogger("ancho.executor")
    _give_up_root(log)
    _temp_in_sandbox()
    # The store's credential, when the URL has none, is asked of the scheduler once the
    # driver is subscribed; whatever opens the store first waits for it.
    credential = None
    if config.ask_credential:
        credential = StoreCredential(config.run_id, timeout_s=config.credential_timeout_s)
    runlog = _run_log(config, credential)
    executor: Any = None
    try:
        from ancho.sandbox.process import IsolationUnavailable, not_dumpable

        try:
            not_dumpable()  # model code (a child of ours) cannot read our memory
        except IsolationUnavailable as exc:
            log.warning("%s", exc)
        from pymesos import MesosExecutorDriver  # imported late: it installs a SIGINT handler

        from .driver import executor_driver
        from .mesos import AnchoExecutor

        log.info("starting: %s", config.describe())
        executor = AnchoExecutor(config, credential)
        driver = executor_driver(MesosExecutorDriver)(executor, use_addict=False)
        driver.run()
    finally:
        # Flush on the way out: the model's last lines, then the log itself (a second
        # SIGTERM must not cut that short; SIGKILL still ends it).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        worker = getattr(executor, "worker", None)
        if worker is not None:
            worker.shutdown(_WORKER_EXIT_S)
        runlog.close(_LOG_EXIT_S)


def _run_log(config: ExecutorConfig, credential: StoreCredential | None) -> RunLog:
    """The run's log in the store: this executor's records and its model's output."""
    from ancho.store import open_store

    executor_id = os.environ.get("MESOS_EXECUTOR_ID", "")
    tag = executor_id.removeprefix(f"{config.run_id}.")
    opener = credential.opener() if credential else lambda: open_store(config.store_url)
    runlog = RunLog(config.run_id, opener, tag=tag).start()
    install(runlog)
    logging.getLogger("ancho.executor").addHandler(RunLogHandler(runlog))
    signal.signal(signal.SIGTERM, _terminated)  # so that SIGTERM, too, flushes the log
    return runlog


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _give_up_root(log: logging.Logger) -> None:
    """In Ancho's image (which sets ``ANCHO_EXECUTOR_BECOMES_SANDBOX_OWNER``), become the
    sandbox's owner before anything is written (see :mod:`ancho.sandbox.identity`)."""
    sandbox = os.environ.get("MESOS_SANDBOX")
    if not sandbox or os.environ.get("ANCHO_EXECUTOR_BECOMES_SANDBOX_OWNER") != "1":
        return
    from ancho.sandbox.identity import IdentityError, become_sandbox_owner

    try:
        who = become_sandbox_owner(Path(sandbox))
    except IdentityError as exc:
        sys.stderr.write(f"ancho-executor: {exc}\n")
        raise SystemExit(2) from None
    if who is not None:
        # root's HOME is not ours to read: pip and friends look there.
        home = Path(sandbox) / "tmp"
        home.mkdir(exist_ok=True)
        os.environ["HOME"] = str(home)
        log.info("gave up root for uid %d gid %d (see ancho.sandbox.identity)", who.uid, who.gid)


def _temp_in_sandbox() -> None:
    """Temporary files go to the sandbox: a container's root filesystem is read-only."""
    sandbox = os.environ.get("MESOS_SANDBOX")
    if sandbox and "TMPDIR" not in os.environ:
        tmp = os.path.join(sandbox, "tmp")
        os.makedirs(tmp, exist_ok=True)
        os.environ["TMPDIR"] = tmp
        tempfile.tempdir = None


if __name__ == "__main__":
    main()
