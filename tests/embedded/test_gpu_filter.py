"""GPU agents, as Mesos' master offers them with --filter_gpu_resources (its default):
only to frameworks that declare the GPU_RESOURCES capability. Ancho asks for no GPUs
and does not declare it, although pymesos adds it by itself."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymesos import MesosSchedulerDriver

from ancho.embedded import EmbeddedCluster
from ancho.runner import executor_command
from ancho.store import open_store
from scheduler.framework import ExecutorLaunch
from scheduler.service import SchedulerService

from .conftest import RawStream, Recorder, framework_info


@pytest.fixture
def gpu_cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(tmp_path / "mesos", cpus=2, mem_mb=2048, disk_mb=1000, gpus=1,
                              heartbeat_interval_s=0.5)  # fmt: skip
    cluster.start()
    yield cluster
    cluster.stop()


def _offers_within(stream: RawStream, seconds: float) -> list[dict]:
    """The OFFERS events the stream brings in ``seconds`` (heartbeats keep it moving)."""
    offers, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        event = stream.next_event()
        if event["type"] == "OFFERS":
            offers.append(event)
    return offers


def test_a_gpu_agent_is_offered_only_to_gpu_aware_frameworks(
    gpu_cluster: EmbeddedCluster,
) -> None:
    plain = RawStream(
        gpu_cluster.address,
        {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info()}},
    )
    try:
        assert plain.next_event()["type"] == "SUBSCRIBED"
        assert _offers_within(plain, 2.0) == []  # no capability: not even its CPUs
    finally:
        plain.close()
    # Unmodified pymesos declares GPU_RESOURCES for a 1.x master: it gets the agent whole.
    recorder = Recorder()
    driver = MesosSchedulerDriver(recorder, framework_info(), gpu_cluster.address)
    driver.start()
    try:
        offer = recorder.wait("offer")
        names = {r["name"]: r.get("scalar", {}).get("value") for r in offer["resources"]}
        assert names["gpus"] == 1.0 and names["cpus"] == 2.0
    finally:
        driver.stop()
        driver.join()


def test_ancho_declares_no_gpu_capability_and_gets_no_gpu_agent(
    gpu_cluster: EmbeddedCluster, tmp_path: Path
) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ancho.db'}")
    launch = ExecutorLaunch(executor_command(), {"ANCHO_CACHE_DIR": str(tmp_path / "cache")},
                            lambda _rid: store.url)  # fmt: skip
    service = SchedulerService(store, gpu_cluster.address, launch, None)
    service.start(timeout_s=15)
    try:
        time.sleep(1.5)  # a few allocation rounds
        url = f"http://{gpu_cluster.address}/master/state"
        with urllib.request.urlopen(url, timeout=5) as response:
            [framework] = json.loads(response.read())["frameworks"]
        assert framework["name"] == "ancho"
        assert "GPU_RESOURCES" not in framework["capabilities"]
        assert framework["offered_resources"]["cpus"] == 0.0
    finally:
        service.stop(failover=False)
