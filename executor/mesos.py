"""The pymesos edge of the executor: thin callbacks that hand work to the worker."""

from __future__ import annotations

import json
import logging
from typing import Any

from pymesos import Executor, decode_data

from ancho import messages

from .config import ExecutorConfig
from .credentials import StoreCredential
from .status import StatusReporter
from .worker import BatchTask, BatchWorker

log = logging.getLogger("ancho.executor")


class AnchoExecutor(Executor):  # type: ignore[misc]
    """Receives batch tasks from Mesos and queues them on a :class:`BatchWorker`."""

    def __init__(self, config: ExecutorConfig, credential: StoreCredential | None = None) -> None:
        self.config = config
        #: Where the run's store credential comes from (None: the URL needs none).
        self.credential = credential
        self.worker: BatchWorker | None = None
        self.driver: Any = None

    def registered(
        self, driver: Any, executor_info: Any, framework_info: Any, agent_info: Any
    ) -> None:
        """Start the worker once the agent knows us."""
        self.driver = driver
        if self.credential is not None:
            self.credential.attach(driver)
        if self.worker is None:
            self.worker = BatchWorker(self.config, StatusReporter(driver, self.config.progress_s))
            self.worker.on_idle_exit = driver.stop
            self.worker.start()
        log.info("registered with agent %s", agent_info.get("hostname", "?"))

    def reregistered(self, driver: Any, agent_info: Any) -> None:
        """Nothing to redo: the worker goes on."""
        log.info("re-registered with agent")

    def launchTask(self, driver: Any, task: Any) -> None:
        """Queue the batch; never block the driver's thread."""
        assert self.worker is not None  # registered() always comes first
        task_id = task["task_id"]["value"]
        try:
            spec = json.loads(decode_data(task["data"]))
            batch = BatchTask(task_id, int(spec["start"]), int(spec["stop"]), int(spec["attempt"]))
        except (KeyError, ValueError, TypeError) as exc:
            self.worker.reporter.send(task_id, "TASK_ERROR", message=f"bad batch data: {exc}")
            return
        self.worker.submit(batch)

    def killTask(self, driver: Any, task_id: Any) -> None:
        """Cancel a batch."""
        if self.worker is not None:
            self.worker.cancel(task_id["value"])

    def frameworkMessage(self, driver: Any, message: Any) -> None:
        """``stop``: the run needs this executor no more; or the run's store credential."""
        try:
            decoded = messages.decode(decode_data(message))
        except ValueError as exc:
            log.warning("framework message ignored: %s", exc)
            return
        match decoded:
            case messages.Stop():
                # Nothing more is wanted of this executor: a batch it still runs ends at
                # its next sequence (its store calls give up), queued ones are reported
                # killed, and then it exits.
                if self.worker is not None:
                    log.info("asked to stop")
                    self.worker.stop()
                    self.worker.when_done(driver.stop)
            case messages.Credential() | messages.CredentialRefused():
                if self.credential is not None:
                    self.credential.receive(decoded)
            case _:
                log.warning("unexpected %s message ignored", decoded.op)

    def shutdown(self, driver: Any) -> None:
        """Mesos shuts us down: stop the worker (pymesos kills the process group later)."""
        if self.worker is not None:
            self.worker.stop()

    def error(self, driver: Any, message: str) -> None:
        """Log errors from the agent."""
        log.error("agent error: %s", message)
