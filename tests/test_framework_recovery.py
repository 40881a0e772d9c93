"""The scheduler against what a Mesos master does to a framework, end to end.

Real pieces: the embedded Mesos cluster, unmodified pymesos under Ancho's driver,
executor processes, SQLite. Three situations a real cluster produces:

- the master removed the framework (its failover timeout passed while no scheduler was
  there): a restarted scheduler registers a new framework and finishes the run;
- the connection to the master goes half-open (no error, only silence): after two
  heartbeat intervals the scheduler subscribes again and the run finishes;
- every status update is acknowledged explicitly (pymesos' implicit acknowledgements
  are off): at the end the master holds no task of the framework as active.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import MODELS

from ancho.embedded import EmbeddedCluster
from ancho.model import LoadedModel, OutputNames, run_sequences
from ancho.runner import executor_command, new_run
from ancho.spec import spec_from_data
from ancho.store import RunRecord, Store, open_store
from scheduler.framework import ExecutorLaunch
from scheduler.service import SchedulerService
from scheduler.state import SchedulerConfig

pytestmark = pytest.mark.slow

SEQUENCES = 300


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _master_state(address: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://{address}/master/state", timeout=10) as response:
        state: dict[str, Any] = json.load(response)
    return state


def _setup(tmp_path: Path) -> tuple[Store, RunRecord, ExecutorLaunch]:
    store = open_store(f"sqlite:///{tmp_path / 'ancho.db'}")
    spec = spec_from_data(
        {
            "model": {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"},
            "parameters": {"sleep_s": 0.01},
            "sequences": SEQUENCES,
            "seed": 5,
        }
    )
    run = new_run(spec)
    store.create_run(run)
    launch = ExecutorLaunch(executor_command(), {"ANCHO_CACHE_DIR": str(tmp_path / "cache")},
                            lambda _rid: store.url)  # fmt: skip
    return store, run, launch


def _check_results(store: Store, run: RunRecord) -> None:
    final = store.get_run(run.id)
    assert final.state == "FINISHED", final.reason
    stored = list(store.iter_results(run.id))
    assert [r.sequence for r in stored] == list(range(SEQUENCES))
    model = LoadedModel.load(MODELS / "slow", "model:simulate", {"sleep_s": 0})
    expected = list(run_sequences(model, 5, 0, SEQUENCES, 1, OutputNames()))
    assert [r.outputs for r in stored] == [r.outputs for r in expected]
    assert store.list_batches(run.id) == []


def test_a_removed_framework_is_registered_anew_and_its_run_finishes(tmp_path: Path) -> None:
    store, run, launch = _setup(tmp_path)
    config = SchedulerConfig(fixed_batch=25)
    with EmbeddedCluster(tmp_path / "mesos", cpus=2) as cluster:
        master = cluster.start()
        first = SchedulerService(store, master, launch, None, config, failover_timeout_s=1.0)
        first.start()
        old_id = first.framework.framework_id
        first.submit(run)
        _wait(lambda: store.get_run(run.id).ok >= 50, 60, "progress before the scheduler goes")
        first.stop(failover=True)
        assert store.list_batches(run.id), "batches in flight were persisted"
        # Past the failover timeout the master removes the framework and its tasks.
        _wait(lambda: any(f["id"] == old_id for f in
                          _master_state(master).get("completed_frameworks", [])),
              30, "the master to remove the framework")  # fmt: skip

        second = SchedulerService(store, master, launch, None, config, failover_timeout_s=60)
        second.start(resuming=True)
        try:
            new_id = second.framework.framework_id
            assert new_id and new_id != old_id
            assert store.get_meta(f"framework_id:{master}") == new_id
            assert second.resume_active() == [run.id]
            _wait(lambda: store.get_run(run.id).done, 120, "the run to finish")
        finally:
            second.stop(failover=False)
    _check_results(store, run)
    lines = [e.message for e in store.iter_events(run.id)]
    assert any(f"framework {old_id} was removed" in m and new_id in m for m in lines), lines


class FreezingProxy:
    """A TCP proxy on loopback whose connections can be frozen: kept open, carrying
    nothing either way (a half-open connection, as a dead NAT or a cut cable leaves)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.split(":")
        self.upstream = (host, int(port))
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.frozen: list[threading.Event] = []
        self.accepted = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(self.upstream)
            frozen = threading.Event()
            self.frozen.append(frozen)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, frozen), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, frozen: threading.Event) -> None:
        src.settimeout(0.2)
        while not self._stop.is_set():
            if frozen.is_set():
                time.sleep(0.2)  # hold the connection open, pass nothing
                continue
            try:
                data = src.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            try:
                dst.sendall(data)
            except OSError:
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def freeze_all(self) -> None:
        for frozen in self.frozen:
            frozen.set()

    def close(self) -> None:
        self._stop.set()
        self.server.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path / "mesos", cpus=2, heartbeat_interval_s=1.0) as made:
        made.start()
        yield made


def test_a_half_open_connection_is_noticed_by_heartbeats_and_replaced(
    tmp_path: Path, cluster: EmbeddedCluster
) -> None:
    store, run, launch = _setup(tmp_path)
    proxy = FreezingProxy(cluster.address)
    service = SchedulerService(store, proxy.address, launch, None, SchedulerConfig(fixed_batch=25))
    try:
        service.start()
        service.submit(run)
        _wait(lambda: store.get_run(run.id).ok >= 50, 60, "progress before the freeze")
        before = service.framework.counters["subscriptions"]
        accepted = proxy.accepted
        frozen_at = time.monotonic()
        proxy.freeze_all()
        _wait(lambda: service.framework.counters["subscriptions"] > before, 30,
              "a new subscription")  # fmt: skip
        noticed = time.monotonic() - frozen_at
        assert proxy.accepted > accepted  # over a new connection
        # Silent for more than 2 heartbeat intervals (1 s here), checked every tick.
        assert 2.0 <= noticed < 15.0, noticed
        _wait(lambda: store.get_run(run.id).done, 120, "the run to finish")
        # Every update was acknowledged (pymesos' implicit acknowledgements are off):
        # the master keeps no task of the framework as active.
        framework_id = service.framework.framework_id
        _wait(lambda: all(not f["tasks"] for f in _master_state(cluster.address)["frameworks"]
                          if f["id"] == framework_id), 30, "acknowledgements")  # fmt: skip
    finally:
        service.stop(failover=False)
        proxy.close()
    _check_results(store, run)
