"""Fixtures for the embedded-cluster conformance tests: a cluster, pymesos drivers,
a recording scheduler, raw HTTP helpers and a droppable TCP proxy."""

from __future__ import annotations

import base64
import contextlib
import getpass
import http.client
import json
import os
import shlex
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from ancho.embedded import EmbeddedCluster
from ancho.embedded.recordio import Decoder

EXECUTOR = Path(__file__).with_name("executor_script.py")
EXECUTOR_COMMAND = f"{shlex.quote(sys.executable)} {shlex.quote(str(EXECUTOR))}"
TIMEOUT = 15.0


def wait_until(predicate: Callable[[], Any], timeout: float = TIMEOUT, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.b64encode(raw).decode()


def unb64(value: str) -> Any:
    return base64.b64decode(value)


def running_report(status: Any) -> dict[str, Any]:
    """The ``{"pid", "pgid", "env"}`` the test executor sends with TASK_RUNNING."""
    report: dict[str, Any] = json.loads(unb64(status["data"]))
    return report


class Recorder(Scheduler):  # type: ignore[misc]
    """Records every callback as (kind, payload); tests poll the record."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []

    def _add(self, kind: str, payload: Any) -> None:
        with self.lock:
            self.events.append((kind, payload))

    def registered(self, driver: Any, framework_id: Any, master_info: Any) -> None:
        self._add("registered", framework_id)

    def reregistered(self, driver: Any, master_info: Any) -> None:
        self._add("reregistered", master_info)

    def disconnected(self, driver: Any) -> None:
        self._add("disconnected", None)

    def resourceOffers(self, driver: Any, offers: list[Any]) -> None:
        for offer in offers:
            self._add("offer", offer)

    def offerRescinded(self, driver: Any, offer_id: Any) -> None:
        self._add("rescind", offer_id)

    def statusUpdate(self, driver: Any, status: Any) -> None:
        self._add("status", status)

    def frameworkMessage(self, driver: Any, executor_id: Any, agent_id: Any, data: Any) -> None:
        self._add("message", (executor_id, agent_id, data))

    def executorLost(self, driver: Any, executor_id: Any, agent_id: Any, status: Any) -> None:
        self._add("executor_lost", (executor_id, agent_id, status))

    def error(self, driver: Any, message: str) -> None:
        self._add("error", message)

    def processHeartBeat(self, driver: Any) -> None:
        self._add("heartbeat", None)

    # ------------------------------------------------------------------ queries
    def all(self, kind: str, predicate: Callable[[Any], bool] = lambda _: True) -> list[Any]:
        with self.lock:
            return [p for k, p in self.events if k == kind and predicate(p)]

    def wait(
        self, kind: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = TIMEOUT
    ) -> Any:
        return wait_until(lambda: self.all(kind, predicate), timeout, kind)[0]

    def statuses(self, task_id: str, state: str | None = None) -> list[Any]:
        return self.all(
            "status",
            lambda s: s["task_id"]["value"] == task_id and (state is None or s["state"] == state),
        )

    def reconciled(self, task_id: str) -> list[Any]:
        """Updates for ``task_id`` that answered reconciliation (not executor updates)."""
        return [s for s in self.statuses(task_id) if s.get("reason") == "REASON_RECONCILIATION"]

    def wait_status(self, task_id: str, state: str, timeout: float = TIMEOUT) -> Any:
        return wait_until(lambda: self.statuses(task_id, state), timeout, f"{task_id} {state}")[0]

    def new_offer(self, after: int = 0, timeout: float = TIMEOUT) -> Any:
        """Wait for an offer beyond the first ``after`` ones."""
        offers = wait_until(lambda: self.all("offer")[after:], timeout, "an offer")
        return offers[0]


def framework_info(**extra: Any) -> dict[str, Any]:
    return {"user": getpass.getuser(), "name": "ancho-embedded-test", **extra}


def resources(cpus: float = 0.1, mem: float = 32.0) -> list[dict[str, Any]]:
    return [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": mem}},
    ]


def make_task(
    offer: Any,
    task_id: str,
    spec: dict[str, Any] | None = None,
    *,
    executor_id: str = "exec-1",
    cpus: float = 0.1,
    **executor_extra: Any,
) -> dict[str, Any]:
    executor = {
        "executor_id": {"value": executor_id},
        "command": {"value": EXECUTOR_COMMAND},
        "resources": resources(0.1, 32),
        **executor_extra,
    }
    return {
        "task_id": {"value": task_id},
        "agent_id": offer["agent_id"],
        "name": task_id,
        "data": b64(spec or {}),
        "resources": resources(cpus, 32),
        "executor": executor,
    }


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in process group ``pgid``.

    Orphaned zombies are left out: reaping them is PID 1's job, not the cluster's.
    """
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedCluster]:
    embedded = EmbeddedCluster(
        tmp_path / "mesos",
        cpus=4,
        mem_mb=4096,
        disk_mb=10_000,
        heartbeat_interval_s=0.5,
        status_update_retry_s=0.4,
        default_refuse_s=5.0,
        executor_shutdown_grace_s=0.5,
    )
    embedded.start()
    yield embedded
    embedded.stop()


DriverFactory = Callable[..., tuple[MesosSchedulerDriver, Recorder]]


@pytest.fixture
def start_framework(cluster: EmbeddedCluster) -> Iterator[DriverFactory]:
    """Start pymesos drivers; stop and join them all at teardown."""
    drivers: list[MesosSchedulerDriver] = []

    def start(
        master: str | None = None, *, implicit_acks: bool = True, **info: Any
    ) -> tuple[MesosSchedulerDriver, Recorder]:
        recorder = Recorder()
        driver = MesosSchedulerDriver(
            recorder,
            framework_info(**info),
            master or cluster.address,
            implicit_acknowledgements=implicit_acks,
        )
        driver.start()
        drivers.append(driver)
        return driver, recorder

    yield start
    for driver in drivers:
        driver.stop()
    for driver in drivers:
        driver.join()


class RawStream:
    """A SUBSCRIBE made by hand: headers, then RecordIO events from the chunked body."""

    def __init__(self, address: str, call: dict[str, Any], path: str = "/api/v1/scheduler"):
        host, port = address.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        body = json.dumps(call).encode()
        self.sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n"
            f"Accept: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        self.file = self.sock.makefile("rb")
        status_line = self.file.readline().decode()
        self.status = int(status_line.split()[1])
        self.headers: dict[str, str] = {}
        while (line := self.file.readline().decode().strip()) != "":
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.decoder = Decoder()
        self.pending: list[dict[str, Any]] = []
        self.ended = False
        self.chunk_sizes: list[int] = []

    def next_event(self) -> dict[str, Any]:
        """The next event; raises EOFError when the stream has ended."""
        while not self.pending:
            if self.ended:
                raise EOFError("stream ended")
            size = int(self.file.readline().strip(), 16)
            if size == 0:
                self.file.readline()
                self.ended = True
                continue
            chunk = self.file.read(size)
            self.file.readline()
            self.chunk_sizes.append(size)
            self.pending.extend(json.loads(r) for r in self.decoder.feed(chunk))
        return self.pending.pop(0)

    def wait_event(self, kind: str) -> dict[str, Any]:
        while True:
            message = self.next_event()
            if message["type"] == kind:
                return message

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def post(
    address: str,
    call: Any,
    *,
    stream_id: str | None = None,
    content_type: str = "application/json",
    path: str = "/api/v1/scheduler",
) -> tuple[int, bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    headers = {"Content-Type": content_type}
    if stream_id is not None:
        headers["Mesos-Stream-Id"] = stream_id
    body = call if isinstance(call, bytes) else json.dumps(call).encode()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Proxy:
    """A TCP proxy in front of the master whose connections can be cut at will."""

    def __init__(self, target: str) -> None:
        host, port = target.split(":")
        self.target = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lock = threading.Lock()
        self.sockets: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop(self) -> None:
        """Cut every connection open now (both directions)."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()
        self.drop()
