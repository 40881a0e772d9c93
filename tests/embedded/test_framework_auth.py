"""Framework authentication as a Mesos 1.11 master with --authenticate_http_frameworks,
the basic HTTP authenticator and --credentials: pymesos with principal/secret, and raw
HTTP calls with and without credentials."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pymesos import MesosSchedulerDriver

from ancho.embedded import EmbeddedCluster
from ancho.embedded.auth import CredentialsError, load_credentials

from .conftest import TIMEOUT, Recorder, framework_info

CREDENTIALS = {"credentials": [{"principal": "alice", "secret": "s3cret"},
                               {"principal": "bob", "secret": "hunter2"}]}  # fmt: skip
CHALLENGE = 'Basic realm="mesos-master-scheduler"'


def _basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


def _call(
    address: str, call: Any, headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[str, str], bytes]:
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    try:
        conn.request(method, "/api/v1/scheduler", body=json.dumps(call).encode(),
                     headers={"Content-Type": "application/json", **headers})  # fmt: skip
        response = conn.getresponse()
        body = b"" if response.status == 200 else response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def _subscribe(address: str, authorization: str, **info: Any) -> tuple[int, Any]:
    """SUBSCRIBE with credentials; the status and (if 200) the first event."""
    call: dict[str, Any] = {
        "type": "SUBSCRIBE",
        "subscribe": {"framework_info": framework_info(**info)},
    }
    if "id" in info:
        call["framework_id"] = info["id"]
    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)
    conn.request("POST", "/api/v1/scheduler", body=json.dumps(call).encode(),
                 headers={"Content-Type": "application/json", "Accept": "application/json",
                          "Authorization": authorization})  # fmt: skip
    response = conn.getresponse()
    if response.status != 200:
        body = response.read()
        conn.close()
        return response.status, body
    # One RecordIO record: "<length>\n<json>" (http.client de-chunks the body).
    length = b""
    while not length.endswith(b"\n"):
        length += response.read(1)
    first = json.loads(response.read(int(length)))
    return 200, (first, response.getheader("Mesos-Stream-Id"), conn)


def _state(cluster: EmbeddedCluster) -> Any:
    with urllib.request.urlopen(f"http://{cluster.address}/master/state", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def credentials_file(tmp_path: Path) -> Path:
    path = tmp_path / "credentials"
    path.write_text(json.dumps(CREDENTIALS))
    path.chmod(0o600)
    return path


@pytest.fixture
def auth_cluster(tmp_path: Path, credentials_file: Path) -> Iterator[EmbeddedCluster]:
    embedded = EmbeddedCluster(
        tmp_path / "mesos",
        cpus=2,
        mem_mb=2048,
        heartbeat_interval_s=0.5,
        executor_shutdown_grace_s=0.5,
        credentials=load_credentials(credentials_file),
    )
    embedded.start()
    yield embedded
    embedded.stop()


def test_credentials_file_is_mesos_json(tmp_path: Path, credentials_file: Path) -> None:
    assert load_credentials(credentials_file) == {"alice": "s3cret", "bob": "hunter2"}
    text = tmp_path / "text"
    text.write_text("alice s3cret\n")
    # Mesos 1.11 dropped the plain-text format: refused with a sentence, not parsed.
    with pytest.raises(CredentialsError, match="Invalid json format"):
        load_credentials(text)
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(CredentialsError, match="at least one credential"):
        load_credentials(empty)
    with pytest.raises(CredentialsError, match="Failed to read"):
        load_credentials(tmp_path / "missing")
    nameless = tmp_path / "nameless"
    nameless.write_text('{"credentials": [{"secret": "x"}]}')
    with pytest.raises(CredentialsError, match="principal"):
        load_credentials(nameless)


def test_calls_without_valid_credentials_get_401(auth_cluster: EmbeddedCluster) -> None:
    subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": framework_info()}}
    for authorization in (
        None,
        _basic("alice", "wrong"),
        _basic("mallory", "s3cret"),
        "Bearer abc",
        "Basic !!!",
        _basic("alice", "s3cret").replace("Basic ", "Basic  "),
    ):
        headers = {} if authorization is None else {"Authorization": authorization}
        status, response_headers, _ = _call(auth_cluster.address, subscribe, headers)
        assert status == 401, authorization
        assert response_headers["www-authenticate"] == CHALLENGE
    # Authentication comes first, before the method is even looked at.
    assert _call(auth_cluster.address, subscribe, {}, method="GET")[0] == 401
    assert _call(auth_cluster.address, subscribe, {"Authorization": _basic("alice", "s3cret")},
                 method="GET")[0] == 405  # fmt: skip
    flags = _state(auth_cluster)["flags"]
    assert flags["authenticate_http_frameworks"] == "true"
    assert flags["http_framework_authenticators"] == "basic"


def test_pymesos_with_principal_and_secret_subscribes(auth_cluster: EmbeddedCluster) -> None:
    recorder = Recorder()
    driver = MesosSchedulerDriver(recorder, framework_info(), auth_cluster.address,
                                  principal="alice", secret="s3cret")  # fmt: skip
    driver.start()
    try:
        framework_id = recorder.wait("registered")["value"]
        recorder.new_offer()
        driver.reviveOffers()  # a call after SUBSCRIBE, authenticated too
        state = _state(auth_cluster)
        framework = next(f for f in state["frameworks"] if f["id"] == framework_id)
        # Not in FrameworkInfo: the master fills in the authenticated principal.
        assert framework["principal"] == "alice"
        assert not recorder.all("error")
    finally:
        driver.stop()
        driver.join()


def test_principal_must_match_the_authenticated_one(auth_cluster: EmbeddedCluster) -> None:
    alice, bob = _basic("alice", "s3cret"), _basic("bob", "hunter2")
    status, body = _subscribe(auth_cluster.address, alice, principal="bob")
    assert status == 400
    assert b"does not match principal 'bob'" in body

    status, (subscribed, stream_id, conn) = _subscribe(auth_cluster.address, alice)
    try:
        framework_id = subscribed["subscribed"]["framework_id"]
        revive = {"type": "REVIVE", "framework_id": framework_id}
        headers = {"Mesos-Stream-Id": stream_id}
        assert _call(auth_cluster.address, revive, {**headers, "Authorization": alice})[0] == 202
        # Another principal may not make calls for alice's framework.
        status, _, body = _call(auth_cluster.address, revive, {**headers, "Authorization": bob})
        assert status == 400 and b"does not match principal 'alice'" in body
        # Nor take it over by re-subscribing: ERROR, and alice's stream stays.
        status, (refused, _, other) = _subscribe(auth_cluster.address, bob, id=framework_id)
        other.close()
        assert refused == {
            "type": "ERROR",
            "error": {"message": "Changing framework's principal is not allowed."},
        }
        assert _call(auth_cluster.address, revive, {**headers, "Authorization": alice})[0] == 202
    finally:
        conn.close()
