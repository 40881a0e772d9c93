"""Ancho's pymesos scheduler driver: what Mesos' guides ask of a framework that
pymesos leaves out.

- Capabilities: PARTITION_AWARE (tasks on a partitioned agent are TASK_UNREACHABLE,
  not TASK_LOST, and may come back), and no GPU_RESOURCES, which pymesos adds by itself
  for every 1.x master: Ancho asks for no GPUs, and with that capability a master would
  offer it the CPUs of GPU agents, which GPU frameworks need (Mesos'
  ``--filter_gpu_resources`` keeps GPU agents for the frameworks that declare it).
- Explicit acknowledgements (the framework acknowledges once an update's effect is
  stored), and explicit reconciliation with agent ids, which pymesos' drops.
- A watch on the event stream: the time since the last event, against the
  ``heartbeat_interval_seconds`` of SUBSCRIBED, and a way to subscribe again over a new
  connection when a half-open one has gone quiet.
- Forgetting a FrameworkID the master has removed, to register a new framework.
- An executor FAILURE without an exit status (optional in Mesos' protocol) is passed on
  with None; pymesos would raise.
- Calls (ACCEPT, KILL, ...) time out after ``CALL_TIMEOUT_S``; pymesos waits a day, and
  a call on a half-open connection would hold the scheduler that long.
"""

from __future__ import annotations

import time
from http.client import HTTPConnection
from typing import Any

#: Mesos' default heartbeat interval, for a master that names none.
DEFAULT_HEARTBEAT_S = 15.0
CALL_TIMEOUT_S = 10.0


def driver_class(base: type) -> type:
    """Ancho's driver on top of pymesos' ``MesosSchedulerDriver`` (``base``, imported
    late by the caller: importing pymesos' scheduler installs a SIGINT handler)."""

    class AnchoDriver(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("implicit_acknowledgements", False)
            super().__init__(*args, **kwargs)
            self.heartbeat_s = DEFAULT_HEARTBEAT_S
            self.last_event = time.monotonic()

        @property
        def framework(self) -> dict[str, Any]:
            info: dict[str, Any] = dict(super().framework)
            kept = [c for c in info.get("capabilities", [])
                    if c.get("type") not in ("GPU_RESOURCES", "PARTITION_AWARE")]  # fmt: skip
            info["capabilities"] = [*kept, {"type": "PARTITION_AWARE"}]
            return info

        # --- the event stream --------------------------------------------------
        def on_event(self, event: dict[str, Any]) -> None:
            self.last_event = time.monotonic()
            super().on_event(event)

        def on_subscribed(self, info: dict[str, Any]) -> None:
            interval = info.get("heartbeat_interval_seconds")
            if isinstance(interval, int | float) and interval > 0:
                self.heartbeat_s = float(interval)
            super().on_subscribed(info)

        def on_failure(self, failure: dict[str, Any]) -> None:
            # An executor's FAILURE may lack its exit status (optional in Mesos' proto);
            # pymesos would raise on it, in its event thread.
            if "executor_id" in failure and "status" not in failure:
                failure = {**failure, "status": None}
            super().on_failure(failure)

        def silent_for(self) -> float:
            """Seconds since the master's last event (heartbeats included)."""
            return time.monotonic() - self.last_event

        def resubscribe(self) -> None:
            """Drop the connection and subscribe again to the same master (pymesos'
            loop reconnects when its master changes)."""
            with self._lock:
                self.last_event = time.monotonic()
                master: str | None = getattr(self, "_master", None)
                if master is None:
                    return
                self._new_master = master
                setattr(self, "_master", None)  # noqa: B010 (pymesos' private state)
            self._notify()
            self._close()  # the calls' connection too: it may be just as dead

        def _get_conn(self) -> HTTPConnection | None:
            if not self.connected:
                return None
            conn: HTTPConnection | None = getattr(self, "_conn", None)
            if conn is None:
                host, port = self.master.split(":", 1)
                conn = HTTPConnection(host, int(port), timeout=CALL_TIMEOUT_S)
                setattr(self, "_conn", conn)  # noqa: B010 (pymesos' private state)
            return conn

        def forget_framework_id(self) -> None:
            """The master removed our framework: the next subscription registers anew."""
            with self._lock:
                self._framework.pop("id", None)

        # --- calls pymesos makes differently -------------------------------------
        def reconcile(self, tasks: list[tuple[str, str]]) -> None:
            """RECONCILE with agent ids (none: implicit reconciliation of every task)."""
            if not self.connected:
                raise RuntimeError("not connected to a Mesos master")
            wanted = []
            for task_id, agent_id in tasks:
                item: dict[str, Any] = {"task_id": {"value": task_id}}
                if agent_id:
                    item["agent_id"] = {"value": agent_id}
                wanted.append(item)
            self._send({
                "type": "RECONCILE",
                "framework_id": {"value": self.framework_id},
                "reconcile": {"tasks": wanted},
            })  # fmt: skip

    return AnchoDriver
