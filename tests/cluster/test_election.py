"""Leader election through a real ZooKeeper, as unmodified pymesos' detector reads it."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient
from pymesos.detector import MasterDetector

from ancho.cluster.zookeeper import ZooKeeperNode
from ancho.embedded.election import Candidacy, LeaderWatch, ZkUrl, leader_member

_paths = itertools.count()


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def master_info(port: int) -> dict[str, Any]:
    return {
        "id": f"master-{port}",
        "pid": f"master@127.0.0.1:{port}",
        "port": port,
        "hostname": "127.0.0.1",
        "version": "1.11.0",
        "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": port},
    }


class Events:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[str] = []

    def add(self, what: str) -> Callable[[], None]:
        def record() -> None:
            with self.lock:
                self.seen.append(what)

        return record


class DetectedMasters:
    """What pymesos' MasterDetector reports to its driver."""

    def __init__(self) -> None:
        self.addresses: list[str | None] = []

    def onNewMasterDetectedMessage(self, data: bytes) -> None:
        self.addresses.append(f"{json.loads(data)['address']['port']}")

    def onNoMasterDetectedMessage(self) -> None:
        self.addresses.append(None)


@pytest.fixture
def url(zookeeper: ZooKeeperNode) -> ZkUrl:
    return ZkUrl(zookeeper.address, f"/mesos{next(_paths)}")


@pytest.fixture
def stoppers() -> Iterator[list[Callable[[], None]]]:
    to_stop: list[Callable[[], None]] = []
    yield to_stop
    for stop in reversed(to_stop):
        stop()


def test_zk_urls_parse_and_bad_ones_say_why() -> None:
    url = ZkUrl.parse("zk://127.0.0.1:2181,127.0.0.2:2181/mesos")
    assert (url.hosts, url.path) == ("127.0.0.1:2181,127.0.0.2:2181", "/mesos")
    assert str(url) == "zk://127.0.0.1:2181,127.0.0.2:2181/mesos"
    for bad in ("127.0.0.1:2181/mesos", "zk://127.0.0.1:2181", "http://h:1/mesos"):
        with pytest.raises(ValueError, match="is not a zk://"):
            ZkUrl.parse(bad)


def test_the_lowest_sequence_leads_whatever_the_prefix() -> None:
    children = ["json.info_0000000012", "log_replicas", "info_0000000011", "json.info_13"]
    assert leader_member(children) == "info_0000000011"
    assert leader_member(["log_replicas"]) is None


def test_first_contender_leads_and_a_standby_takes_over_for_pymesos(
    url: ZkUrl, stoppers: list[Callable[[], None]]
) -> None:
    events = Events()
    first = Candidacy(url, master_info(5050), events.add("first elected"), events.add("first lost"))
    first.start()
    stoppers.append(first.stop)
    wait_until(lambda: first.leading, what="the first master to lead")
    second = Candidacy(url, master_info(5051), events.add("second elected"), events.add("x"))
    second.start()
    stoppers.append(second.stop)
    watch = LeaderWatch(url)
    watch.start()
    stoppers.append(watch.stop)
    wait_until(lambda: watch.leader, what="the watch to see a leader")
    assert watch.leader is not None and watch.leader["address"]["port"] == 5050
    assert not second.leading

    detected = DetectedMasters()
    detector = MasterDetector(f"{url.hosts}{url.path}", detected)
    detector.start()
    stoppers.append(detector.stop)
    wait_until(lambda: detected.addresses, what="pymesos to detect the leader")
    assert detected.addresses == ["5050"]

    first.stop()  # its session closes: the ephemeral member goes at once
    wait_until(lambda: second.leading, what="the standby to lead")
    wait_until(lambda: detected.addresses[-1:] == ["5051"], what="pymesos to follow")
    wait_until(lambda: watch.leader and watch.leader["port"] == 5051, what="the watch to follow")
    assert events.seen == ["first elected", "second elected"]

    second.stop()
    wait_until(lambda: detected.addresses[-1:] == [None], what="pymesos to see no leader")
    wait_until(lambda: watch.leader is None, what="the watch to see no leader")


def test_an_expired_session_ends_the_candidacy(
    url: ZkUrl, stoppers: list[Callable[[], None]]
) -> None:
    events = Events()
    master = Candidacy(url, master_info(5060), events.add("elected"), events.add("lost"))
    master.start()
    stoppers.append(master.stop)
    wait_until(lambda: master.leading, what="the master to lead")
    # ZooKeeper's own way to expire a session: a second client on the same session id
    # and password, closed.
    session_id, password = master.client.client_id
    twin = KazooClient(hosts=url.hosts, client_id=(session_id, password), timeout=4)
    twin.start(timeout=10)
    twin.stop()
    twin.close()
    wait_until(lambda: "lost" in events.seen, what="the candidacy to end")
    assert not master.leading
    assert events.seen == ["elected", "lost"]
