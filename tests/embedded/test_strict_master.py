"""The master is as strict as a Mesos 1.11 master: JSON nulls, media types, UUIDs,
unknown frameworks, immutable FrameworkInfo fields and the offer timeout."""

from __future__ import annotations

import base64
import http.client
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ancho.embedded import EmbeddedCluster

from .conftest import TIMEOUT, DriverFactory, RawStream, framework_info, make_task, wait_until


def _call(
    address: str, call: Any, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    """One scheduler call with exactly the headers given (Content-Type JSON by default)."""
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    sent = {"Content-Type": "application/json", **(headers or {})}
    body = call if isinstance(call, bytes) else json.dumps(call).encode()
    try:
        conn.request(method, "/api/v1/scheduler", body=body, headers=sent)
        response = conn.getresponse()
        # A SUBSCRIBE answered 200 streams forever: read only its headers.
        payload = b"" if response.status == 200 else response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload
    finally:
        conn.close()


def _state(cluster: EmbeddedCluster) -> Any:
    with urllib.request.urlopen(f"http://{cluster.address}/master/state", timeout=5) as response:
        return json.loads(response.read())


def _framework_state(cluster: EmbeddedCluster, framework_id: str) -> Any:
    return next(f for f in _state(cluster)["frameworks"] if f["id"] == framework_id)


class Subscribed:
    """A hand-made subscription: its stream, framework id and a call helper."""

    def __init__(self, cluster: EmbeddedCluster, call: dict[str, Any]) -> None:
        self.stream = RawStream(cluster.address, call)
        assert self.stream.status == 200
        self.framework_id = self.stream.next_event()["subscribed"]["framework_id"]["value"]
        self.address = cluster.address

    def call(self, kind: str, body: Any = None, **headers: str) -> int:
        message: dict[str, Any] = {"type": kind, "framework_id": {"value": self.framework_id}}
        if body is not None:
            message[kind.lower()] = body
        headers["Mesos-Stream-Id"] = self.stream.headers["mesos-stream-id"]
        return _call(self.address, message, headers)[0]


@pytest.fixture
def subscribed(cluster: EmbeddedCluster) -> Iterator[Subscribed]:
    sub = Subscribed(
        cluster,
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info(failover_timeout=60)}},
    )
    yield sub
    sub.stream.close()


def test_null_fields_are_unset_and_null_required_fields_are_missing(
    cluster: EmbeddedCluster,
) -> None:
    info = framework_info(
        capabilities=None, failover_timeout=None, hostname=None, labels=None, roles=None
    )
    call = {"type": "SUBSCRIBE", "framework_id": None, "subscribe": {"framework_info": info}}
    sub = Subscribed(cluster, call)
    try:
        offer_id = sub.stream.wait_event("OFFERS")["offers"]["offers"][0]["id"]
        state = _framework_state(cluster, sub.framework_id)
        assert state["capabilities"] == [] and state["failover_timeout"] == 0.0
        assert sub.call("REVIVE", None) == 202
        assert sub.call("ACCEPT", {"offer_ids": None, "operations": None, "filters": None}) == 202
        assert sub.call("RECONCILE", {"tasks": None}) == 202
        # A null element of a repeated field is skipped, as stout's parser does.
        declined = {"offer_ids": [offer_id, None], "filters": {"refuse_seconds": None}}
        assert sub.call("DECLINE", declined) == 202
        assert _framework_state(cluster, sub.framework_id)["offers"] == []
        # Required fields given as null are missing: the whole call is a 400.
        assert sub.call("KILL", {"task_id": None}) == 400
        assert sub.call("KILL", {"task_id": {"value": None}}) == 400
        assert sub.call("DECLINE", None) == 400
        ack = {"agent_id": {"value": cluster.agent_id}, "task_id": {"value": "t"}, "uuid": None}
        assert sub.call("ACKNOWLEDGE", ack) == 400
        nameless = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info(name=None)}}
        assert _call(cluster.address, nameless)[0] == 400
        # A JSON type protobuf cannot take is a 400 too, never a 500.
        assert sub.call("DECLINE", {"offer_ids": "x"}) == 400
        assert sub.call("DECLINE", {"offer_ids": [], "filters": {"refuse_seconds": "soon"}}) == 400
        assert sub.call("REVIVE", {"roles": [{"no": "role"}]}) == 400
    finally:
        sub.stream.close()


def test_content_type_must_be_exactly_json_and_accept_matters_only_on_subscribe(
    cluster: EmbeddedCluster, subscribed: Subscribed
) -> None:
    revive = {"type": "REVIVE", "framework_id": {"value": subscribed.framework_id}}
    stream_id = {"Mesos-Stream-Id": subscribed.stream.headers["mesos-stream-id"]}
    # Mesos compares the whole Content-Type value with "application/json".
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "text/json"):
        headers = {**stream_id, "Content-Type": content_type}
        assert _call(cluster.address, revive, headers)[0] == 415, content_type
    protobuf = {**stream_id, "Content-Type": "application/x-protobuf"}
    assert _call(cluster.address, b"\x08\x07", protobuf)[0] == 415
    # Calls answered without a body do not look at Accept.
    assert _call(cluster.address, revive, {**stream_id, "Accept": "text/html"})[0] == 202

    subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info()}}
    for accept in (
        "application/recordio",
        "application/x-protobuf",
        "text/html, application/json;q=0",
    ):
        status, _, body = _call(cluster.address, subscribe, {"Accept": accept})
        assert status == 406, (accept, body)
    for accept in ("application/*", "text/html, */*", "application/json;q=0.5"):
        status, headers, _ = _call(cluster.address, subscribe, {"Accept": accept})
        assert status == 200, accept
        # RecordIO framing inside application/json, whatever was asked for.
        assert headers["content-type"] == "application/json"
        assert "message-content-type" not in headers


def test_acknowledge_uuid_must_be_a_uuid(cluster: EmbeddedCluster, subscribed: Subscribed) -> None:
    def ack(uuid_value: str) -> int:
        body = {
            "agent_id": {"value": cluster.agent_id},
            "task_id": {"value": "nope"},
            "uuid": uuid_value,
        }
        return subscribed.call("ACKNOWLEDGE", body)

    assert ack(base64.b64encode(b"short").decode()) == 400
    assert ack("not base64!") == 400
    assert ack(base64.b64encode(bytes(16)).decode()) == 400  # version 0: no UUID
    assert ack(base64.b64encode(os.urandom(17)).decode()) == 400
    assert ack(base64.b64encode(uuid.uuid4().bytes).decode()) == 202


def test_unknown_framework_is_400_and_known_unsubscribed_is_403(
    cluster: EmbeddedCluster, subscribed: Subscribed
) -> None:
    stream_id = {"Mesos-Stream-Id": subscribed.stream.headers["mesos-stream-id"]}
    unknown = {"type": "REVIVE", "framework_id": {"value": "never-seen"}}
    status, _, body = _call(cluster.address, unknown, stream_id)
    assert (status, body) == (400, b"Framework cannot be found\n")
    assert (
        _call(cluster.address, {"type": "NO_SUCH_CALL", "framework_id": unknown["framework_id"]})[0]
        == 400
    )
    subscribed.stream.close()
    known = {"type": "REVIVE", "framework_id": {"value": subscribed.framework_id}}
    wait_until(lambda: _call(cluster.address, known, stream_id)[0] == 403)


def test_resubscribe_keeps_user_and_checkpoint(
    cluster: EmbeddedCluster, subscribed: Subscribed
) -> None:
    framework_id = subscribed.framework_id
    before = _framework_state(cluster, framework_id)
    assert before["checkpoint"] is False
    info = framework_info(
        id={"value": framework_id}, user="someone-else", checkpoint=True, name="renamed"
    )
    call = {
        "type": "SUBSCRIBE",
        "framework_id": {"value": framework_id},
        "subscribe": {"framework_info": info},
    }
    again = Subscribed(cluster, call)
    try:
        assert again.framework_id == framework_id
        after = _framework_state(cluster, framework_id)
        # As Mesos (MESOS-703): kept silently; the other fields do change.
        assert (after["user"], after["checkpoint"]) == (before["user"], False)
        assert after["name"] == "renamed"
    finally:
        again.stream.close()


def test_update_framework_rules(cluster: EmbeddedCluster, subscribed: Subscribed) -> None:
    framework_id = {"value": subscribed.framework_id}
    no_id = {"framework_info": framework_info(name="x")}
    assert subscribed.call("UPDATE_FRAMEWORK", no_id) == 400
    other_user = {"framework_info": framework_info(id=framework_id, user="someone-else")}
    assert subscribed.call("UPDATE_FRAMEWORK", other_user) == 400
    checkpoint = {"framework_info": framework_info(id=framework_id, checkpoint=True)}
    assert subscribed.call("UPDATE_FRAMEWORK", checkpoint) == 400
    renamed = {"framework_info": framework_info(id=framework_id, name="renamed")}
    assert subscribed.call("UPDATE_FRAMEWORK", renamed) == 200  # 200 OK, not 202
    assert _framework_state(cluster, subscribed.framework_id)["name"] == "renamed"


@pytest.fixture
def timeout_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    embedded = EmbeddedCluster(
        tmp_path / "mesos",
        cpus=4,
        mem_mb=4096,
        heartbeat_interval_s=0.5,
        default_refuse_s=5.0,
        executor_shutdown_grace_s=0.5,
        offer_timeout_s=0.5,
    )
    embedded.start()
    yield embedded
    embedded.stop()


def test_offer_timeout_rescinds_offers(
    timeout_cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(timeout_cluster.address)
    offer = sched.new_offer()
    rescinded = sched.wait("rescind")
    assert rescinded == offer["id"]
    # The resources went back without a filter: offered again, whole.
    again = sched.new_offer(after=1)
    assert again["id"] != offer["id"]
    cpus = {r["name"]: r for r in again["resources"]}["cpus"]["scalar"]["value"]
    assert cpus == 4
    state = _state(timeout_cluster)
    assert state["flags"]["offer_timeout"] == "500ms"
    # Using the rescinded offer is using an invalid one.
    driver.launchTasks(offer["id"], [make_task(offer, "late")])
    status = sched.wait_status("late", "TASK_LOST")
    assert status["reason"] == "REASON_INVALID_OFFERS"
    assert "late" not in str(_state(timeout_cluster)["frameworks"][0]["tasks"])
