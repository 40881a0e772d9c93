"""pymesos' executor driver, retrying as Mesos' executor API asks.

An agent sets ``MESOS_SUBSCRIPTION_BACKOFF_MAX`` and ``MESOS_RECOVERY_TIMEOUT`` for the
executors of checkpointing frameworks. When its connection to the agent drops (the
agent restarts), an executor subscribes again with a backoff that never exceeds the
first, so that it is back within the agent's ``--executor_reregistration_timeout``
(2 s by default), and it gives up once it has been disconnected for the second.
pymesos ignores both: it backs off 2, 4, 8 then 15 s, which misses a restarted agent's
window, and retries for a day.

An executor also keeps every update it sent until the agent acknowledges it, and lists
those in its next SUBSCRIBE (``unacknowledged_updates``), so that an update sent while
the agent was away reaches it once the executor is back. pymesos only removes updates
from that list: it never adds them, so a batch's terminal update sent during an agent
restart was lost, and the agent held the task RUNNING until the executor went idle.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Mapping
from typing import Any

#: Mesos' defaults (src/slave/constants.cpp): 2 s and 15 min.
DEFAULT_BACKOFF_MAX_S = 2.0
DEFAULT_RECOVERY_TIMEOUT_S = 15 * 60.0
#: The first retry's upper bound; doubled per failed attempt up to the maximum.
FIRST_BACKOFF_S = 0.1

_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "secs": 1.0, "mins": 60.0, "hrs": 3600.0,
          "days": 86400.0, "weeks": 604800.0}  # fmt: skip


def parse_duration(text: str) -> float:
    """Seconds in a Mesos duration such as ``2secs``, ``15mins`` or ``500ms``."""
    value = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = value[: -len(unit)].strip()
            try:
                return float(number) * _UNITS[unit]
            except ValueError:
                break
    raise ValueError(f"not a Mesos duration: {text!r} (e.g. 2secs, 15mins)")


def recovery_settings(env: Mapping[str, str] | None = None) -> tuple[float, float]:
    """(backoff maximum, recovery timeout) in seconds, from the agent's variables."""
    source = os.environ if env is None else env
    backoff = source.get("MESOS_SUBSCRIPTION_BACKOFF_MAX")
    timeout = source.get("MESOS_RECOVERY_TIMEOUT")
    return (
        parse_duration(backoff) if backoff else DEFAULT_BACKOFF_MAX_S,
        parse_duration(timeout) if timeout else DEFAULT_RECOVERY_TIMEOUT_S,
    )


def backoff_s(attempt: int, maximum: float, rng: random.Random | None = None) -> float:
    """The wait before re-subscription ``attempt`` (0-based): uniform in [0, b], with
    b = FIRST_BACKOFF_S doubled per attempt and capped at ``maximum``, as Mesos' own
    executor library does."""
    bound = min(maximum, FIRST_BACKOFF_S * 2.0 ** min(attempt, 30))
    return (rng or random).uniform(0.0, bound)


def executor_driver(base: type) -> type:
    """Ancho's executor driver on top of pymesos' ``MesosExecutorDriver`` (``base``,
    imported late by the caller: importing it installs a SIGINT handler)."""

    from pymesos import decode_data, encode_data

    class AnchoExecutorDriver(base):  # type: ignore[misc, valid-type]
        def __init__(self, executor: Any, **kwargs: Any) -> None:
            self.backoff_max_s, recovery_s = recovery_settings()
            # pymesos' timeout is how long it keeps reconnecting before it gives up.
            kwargs.setdefault("timeout", recovery_s)
            super().__init__(executor, **kwargs)

        def _backoff(self, num_conn_retry: int) -> float:
            return backoff_s(num_conn_retry, self.backoff_max_s)

        def sendStatusUpdate(self, status: dict[str, Any]) -> None:
            status.setdefault("uuid", encode_data(uuid.uuid4().bytes))
            # Kept under the key pymesos' on_acknowledged removes it by.
            self.updates[uuid.UUID(bytes=decode_data(status["uuid"]))] = {"status": status}
            super().sendStatusUpdate(status)

    return AnchoExecutorDriver
