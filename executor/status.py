"""Status updates of batch tasks: throttled progress, exactly one terminal update."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Protocol

from pymesos import encode_data

from ancho.messages import BatchReport

log = logging.getLogger("ancho.executor")


class Driver(Protocol):
    """The part of pymesos' ExecutorDriver we use."""

    def sendStatusUpdate(self, status: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class StatusReporter:
    """Sends task states with the batch's :class:`~ancho.messages.BatchReport` as ``data``
    (JSON, base64).

    Progress is sent at most every ``progress_s``; a task gets one terminal update,
    whatever races between a kill and the worker finishing.
    """

    def __init__(self, driver: Driver, progress_s: float) -> None:
        self._driver = driver
        self._progress_s = progress_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._terminal: set[str] = set()

    def send(
        self, task_id: str, state: str, report: BatchReport | None = None, **extra: Any
    ) -> bool:
        """Send one update; False when the task already ended (nothing is sent)."""
        terminal = state not in ("TASK_RUNNING", "TASK_STARTING", "TASK_STAGING")
        with self._lock:
            if task_id in self._terminal:
                return False
            if terminal:
                self._terminal.add(task_id)
                self._last.pop(task_id, None)
            else:
                self._last[task_id] = time.monotonic()
        # Mesos' TaskStatus.timestamp is a double; pymesos would put whole seconds.
        status: dict[str, Any] = {"task_id": {"value": task_id}, "state": state,
                                  "timestamp": time.time(), **extra}  # fmt: skip
        if report is not None:
            status["data"] = encode_data(json.dumps(report.to_data()).encode())
        try:
            self._driver.sendStatusUpdate(status)
        except Exception:  # the agent is gone: pymesos will shut us down
            log.exception("status update %s %s not sent", task_id, state)
        return True

    def progress(self, task_id: str, report: BatchReport) -> bool:
        """A TASK_RUNNING update with progress, unless one went out recently; whether it
        was sent."""
        with self._lock:
            last = self._last.get(task_id, 0.0)
            if time.monotonic() - last < self._progress_s or task_id in self._terminal:
                return False
        return self.send(task_id, "TASK_RUNNING", report)
