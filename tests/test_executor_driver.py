"""The executor's re-subscription timing, from the variables a Mesos agent sets."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from executor.driver import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_RECOVERY_TIMEOUT_S,
    backoff_s,
    parse_duration,
    recovery_settings,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2secs", 2.0), ("15mins", 900.0), ("500ms", 0.5), ("1.5hrs", 5400.0), ("3days", 259200.0)],
)
def test_mesos_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["2", "secs", "2 parsecs", ""])
def test_bad_durations_are_refused_by_name(text: str) -> None:
    with pytest.raises(ValueError, match="not a Mesos duration"):
        parse_duration(text)


def test_the_agents_variables_win_over_mesos_defaults() -> None:
    env = {"MESOS_SUBSCRIPTION_BACKOFF_MAX": "1secs", "MESOS_RECOVERY_TIMEOUT": "5mins"}
    assert recovery_settings(env) == (1.0, 300.0)
    assert recovery_settings({}) == (DEFAULT_BACKOFF_MAX_S, DEFAULT_RECOVERY_TIMEOUT_S)


def test_backoff_doubles_from_a_tenth_of_a_second_and_never_passes_the_maximum() -> None:
    rng = random.Random(7)
    for attempt in range(40):
        waits = [backoff_s(attempt, 2.0, rng) for _ in range(200)]
        bound = min(2.0, 0.1 * 2**attempt)
        assert all(0.0 <= w <= bound for w in waits)
        assert max(waits) > 0.8 * bound  # uniform over the whole interval
    # Within a restarted agent's 2 s window an executor tries at least 4 times (pymesos: once).
    assert sum(min(2.0, 0.1 * 2**a) for a in range(4)) < 2.0


def test_an_update_the_agent_did_not_take_goes_in_the_next_subscribe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The agent is away (nothing listens): the send fails, and the update waits in the
    # SUBSCRIBE the driver sends when it reconnects, until the agent acknowledges it.
    from pymesos import MesosExecutorDriver

    from ancho.cluster.ports import free_port
    from executor.driver import executor_driver

    monkeypatch.setenv("MESOS_AGENT_ENDPOINT", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("MESOS_FRAMEWORK_ID", "f-1")
    monkeypatch.setenv("MESOS_EXECUTOR_ID", "e-1")
    driver = executor_driver(MesosExecutorDriver)(object(), use_addict=False)
    status = {"task_id": {"value": "t-1"}, "state": "TASK_FINISHED"}
    with pytest.raises(Exception):  # noqa: B017 - whatever pymesos raises for no agent
        driver.sendStatusUpdate(status)

    def subscribe() -> dict[str, Any]:
        body = driver.gen_request().split(b"\r\n\r\n", 1)[1]
        subscription: dict[str, Any] = json.loads(body)["subscribe"]
        return subscription

    pending = subscribe()["unacknowledged_updates"]
    assert [u["status"]["task_id"] for u in pending] == [{"value": "t-1"}]
    assert pending[0]["status"]["state"] == "TASK_FINISHED" and pending[0]["status"]["uuid"]
    driver.on_acknowledged({"task_id": {"value": "t-1"}, "uuid": pending[0]["status"]["uuid"]})
    assert subscribe()["unacknowledged_updates"] == []
