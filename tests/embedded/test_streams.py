"""HTTP-level conformance: chunked RecordIO streams, stream ids, media types, failover."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from ancho.embedded import EmbeddedCluster
from ancho.embedded.recordio import Decoder, RecordIOError, encode, encode_json

from .conftest import (
    DriverFactory,
    Proxy,
    RawStream,
    framework_info,
    group_alive,
    make_task,
    pid_alive,
    post,
    running_report,
    wait_until,
)


def _subscribe(address: str, framework_id: str | None = None, **info: object) -> RawStream:
    """SUBSCRIBE by hand; with ``framework_id`` as a (re-)subscription under that id."""
    call: dict[str, object] = {"type": "SUBSCRIBE"}
    if framework_id is not None:
        call["framework_id"] = {"value": framework_id}
        info["id"] = {"value": framework_id}
    call["subscribe"] = {"framework_info": framework_info(**info)}
    return RawStream(address, call)


def test_recordio_records_split_anywhere() -> None:
    records = [json.dumps({"n": i, "pad": "x" * i * 37}).encode() for i in range(40)]
    stream = b"".join(encode(r) for r in records)
    rng = random.Random(7)
    for _ in range(50):
        decoder = Decoder()
        out: list[bytes] = []
        position = 0
        while position < len(stream):
            step = rng.randint(1, 200)
            out += decoder.feed(stream[position : position + step])
            position += step
        assert out == records
        assert decoder.pending == 0
    assert encode_json({"type": "HEARTBEAT"}) == b'20\n{"type":"HEARTBEAT"}'
    with pytest.raises(RecordIOError):
        Decoder().feed(b"abc\n{}")


def test_raw_subscribe_stream(cluster: EmbeddedCluster) -> None:
    stream = _subscribe(cluster.address)
    try:
        assert stream.status == 200
        assert stream.headers["transfer-encoding"] == "chunked"
        assert stream.headers["content-type"] == "application/json"
        uuid.UUID(stream.headers["mesos-stream-id"])
        subscribed = stream.next_event()
        assert subscribed["type"] == "SUBSCRIBED"
        body = subscribed["subscribed"]
        assert body["heartbeat_interval_seconds"] == 0.5
        assert body["master_info"]["version"] == "1.11.0"
        assert body["master_info"]["port"] == int(cluster.address.split(":")[1])
        offers = stream.wait_event("OFFERS")["offers"]["offers"]
        assert offers[0]["framework_id"] == body["framework_id"]
        stream.wait_event("HEARTBEAT")
    finally:
        stream.close()


def test_stream_id_and_media_type_rules(cluster: EmbeddedCluster) -> None:
    stream = _subscribe(cluster.address, failover_timeout=60.0)
    try:
        framework_id = stream.next_event()["subscribed"]["framework_id"]
        stream_id = stream.headers["mesos-stream-id"]
        revive = {"type": "REVIVE", "framework_id": framework_id}
        assert post(cluster.address, revive, stream_id=stream_id) == (202, b"")
        assert post(cluster.address, revive)[0] == 400
        assert post(cluster.address, revive, stream_id=str(uuid.uuid4()))[0] == 400
        unknown = {"type": "REVIVE", "framework_id": {"value": "nope"}}
        # Mesos: 400 "Framework cannot be found"; 403 is for a known, unsubscribed one.
        assert post(cluster.address, unknown, stream_id=stream_id)[0] == 400
        assert (
            post(cluster.address, revive, stream_id=stream_id, content_type="text/plain")[0] == 415
        )
        protobuf = "application/x-protobuf"
        assert (
            post(cluster.address, b"\x08\x01", stream_id=stream_id, content_type=protobuf)[0] == 415
        )
        assert post(cluster.address, b"{not json", stream_id=stream_id)[0] == 400
        assert post(cluster.address, {"no": "type"}, stream_id=stream_id)[0] == 400
        no_body = {"type": "ACCEPT", "framework_id": framework_id}
        assert post(cluster.address, no_body, stream_id=stream_id)[0] == 400
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info()}}
        assert post(cluster.address, subscribe, stream_id=stream_id)[0] == 400
        assert post(cluster.address, {"type": "SUBSCRIBE", "subscribe": {}})[0] == 400
    finally:
        stream.close()
    # Once the stream is gone the framework is disconnected: 403 until it re-subscribes.
    wait_until(lambda: post(cluster.address, revive, stream_id=stream_id)[0] == 403)


def test_dropped_stream_resubscribes_and_keeps_tasks(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    proxy = Proxy(cluster.address)
    try:
        driver, sched = start_framework(proxy.address, failover_timeout=30)
        offer = sched.new_offer()
        driver.launchTasks(offer["id"], [make_task(offer, "f1", {"mode": "run"})])
        running = sched.wait_status("f1", "TASK_RUNNING")
        pid = running_report(running)["pid"]
        proxy.drop()
        sched.wait("disconnected")
        sched.wait("reregistered")
        driver.reconcileTasks([{"task_id": {"value": "f1"}}])
        status = wait_until(lambda: sched.reconciled("f1"))[0]
        assert status["state"] == "TASK_RUNNING"
        assert pid_alive(pid)
        assert not sched.all("executor_lost")
    finally:
        proxy.close()


def test_second_subscribe_fails_over_old_stream(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    old = _subscribe(cluster.address, failover_timeout=30)
    try:
        framework_id = old.next_event()["subscribed"]["framework_id"]
        _driver, sched = start_framework(id=framework_id, failover_timeout=30)
        sched.wait("reregistered")  # pymesos already had an id
        error = old.wait_event("ERROR")
        assert error["error"]["message"] == "Framework failed over"
        with pytest.raises(EOFError):
            while True:
                old.next_event()
        sched.new_offer()
    finally:
        old.close()


def test_failover_timeout_removes_framework(
    cluster: EmbeddedCluster, start_framework: DriverFactory
) -> None:
    driver, sched = start_framework(failover_timeout=1.0)
    framework_id = sched.wait("registered")["value"]
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [make_task(offer, "ft", {"mode": "run"})])
    running = sched.wait_status("ft", "TASK_RUNNING")
    pgid = running_report(running)["pgid"]
    driver.stop(failover=True)  # no TEARDOWN: the stream just goes away
    driver.join()
    wait_until(lambda: not pid_alive(pgid), what="the executor to be shut down")
    assert not group_alive(pgid)
    again = _subscribe(cluster.address, framework_id)
    try:
        assert again.next_event()["error"]["message"] == "Framework has been removed"
    finally:
        again.close()
