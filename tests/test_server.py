"""``ancho server`` live on a free port with the embedded master: the REST API, tokens,
``ancho submit``, query commands through the server, logs, metrics, SIGTERM and restart.
"""

from __future__ import annotations

import html
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e import ANCHO, EXAMPLES, MODELS, LiveServer, ancho, run_id_of

from ancho.client import pack
from ancho.server.context import MISS_RELOAD_S

pytestmark = pytest.mark.slow


class Site:
    """A live server and two users of it."""

    def __init__(self, server: LiveServer, tokens: dict[str, str], root: Path) -> None:
        self.server, self.tokens, self.root = server, tokens, root

    def env(self, user: str) -> dict[str, str]:
        """What a user's shell has: the server and their token."""
        return {"ANCHO_SERVER": self.server.url, "ANCHO_TOKEN": self.tokens[user],
                "XDG_CONFIG_HOME": str(self.root / "no-config")}  # fmt: skip

    def call(self, method: str, path: str, user: str | None = "alice", body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, str]:  # fmt: skip
        """One API call as ``user`` (None: no token)."""
        token = self.tokens[user] if user else None
        return self.server.request(method, path, token, body, headers)

    def wait(self, run_id: str, user: str = "alice", timeout: float = 120) -> dict[str, Any]:
        """Poll the run until it ends."""
        deadline = time.monotonic() + timeout
        while True:
            status, doc, _ = self.call("GET", f"/api/v1/runs/{run_id}", user)
            assert status == 200, doc
            if doc["state"] in ("FINISHED", "FAILED", "KILLED"):
                return dict(doc)
            assert time.monotonic() < deadline, doc
            time.sleep(0.3)


def _users(store: str, cwd: Path, *names: str) -> dict[str, str]:
    tokens = {}
    for name in names:
        out = ancho("user", "add", name, "--store", store, cwd=cwd)
        assert out.code == 0, out.stderr
        tokens[name] = out.json()["token"]
    return tokens


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("server")
    store = f"sqlite:///{root / 'ancho.db'}"
    tokens = _users(store, root, "alice", "bob")
    server = LiveServer(store, root, {"ANCHO_MAX_UPLOAD_MB": "1"}).start()
    try:
        yield Site(server, tokens, root)
    finally:
        assert server.stop() == 0


def _upload(site: Site, folder: Path, user: str = "alice") -> str:
    status, doc, _ = site.call("POST", "/api/v1/models", user, pack(folder),
                               {"Content-Type": "application/gzip"})  # fmt: skip
    assert status == 201, doc
    return str(doc["source"])


def test_submit_wait_matches_a_local_run_and_query_commands_work(
    site: Site, tmp_path: Path
) -> None:
    env = site.env("alice")
    args = [str(EXAMPLES / "pi"), "--sequences", "1500", "--seed", "11"]
    sub = ancho("submit", *args, "--wait", cwd=tmp_path, env=env)
    assert sub.code == 0, sub.stderr
    rid = run_id_of(sub)
    assert "FINISHED" in sub.stderr  # the progress bar's last state
    local = ancho("run", *args, cwd=tmp_path)
    assert local.code == 0, local.stderr
    remote_rows = ancho("results", rid, cwd=tmp_path, env=env).stdout
    local_rows = ancho("results", run_id_of(local), cwd=tmp_path).stdout
    assert remote_rows == local_rows and len(remote_rows.splitlines()) == 1500
    csv_rows = ancho("results", rid, "--format", "csv", cwd=tmp_path, env=env).stdout
    assert csv_rows.splitlines()[0] == "sequence,status,pi,inside" and csv_rows.count("\n") == 1501
    remote = ancho("summary", rid, "--format", "json", cwd=tmp_path, env=env).json()
    mine = ancho("summary", run_id_of(local), "--format", "json", cwd=tmp_path).json()
    assert remote["outputs"] == mine["outputs"] and remote["state"] == "FINISHED"
    status = ancho("status", rid, cwd=tmp_path, env=env).json()
    assert status["counts"] == {"total": 1500, "ok": 1500, "failed": 0, "running": 0}
    listed = ancho("list", "--json", cwd=tmp_path, env=env).jsonl()
    assert rid in [r["id"] for r in listed]
    logs = ancho("logs", rid, cwd=tmp_path, env=env)
    assert logs.code == 0 and "run finished" in logs.stdout
    report = ancho("report", rid, "-o", str(tmp_path / "r.html"), cwd=tmp_path, env=env)
    assert report.code == 0, report.stderr
    page = html.unescape((tmp_path / "r.html").read_text())
    assert rid in page and "inside" in page and '"samples"' in page  # run, outputs, spec


def test_post_a_spec_with_an_uploaded_model(site: Site) -> None:
    source = _upload(site, EXAMPLES / "pi")
    assert source.startswith("sha256:") and source == _upload(site, EXAMPLES / "pi")
    spec = {"model": {"source": source, "entrypoint": "model:simulate"}, "sequences": 300,
            "parameters": {"samples": 500}, "seed": 3}  # fmt: skip
    status, doc, _ = site.call("POST", "/api/v1/runs", body=spec)
    assert status == 201 and doc["state"] == "QUEUED", doc
    done = site.wait(doc["id"])
    assert done["state"] == "FINISHED" and done["counts"]["ok"] == 300 and done["seed"] == 3
    status, _, text = site.call("GET", f"/api/v1/runs/{doc['id']}/results?format=jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    assert status == 200 and [r["sequence"] for r in rows] == list(range(300))
    status, summary, _ = site.call("GET", f"/api/v1/runs/{doc['id']}/summary")
    assert status == 200 and summary["outputs"]["pi"]["count"] == 300


def test_tokens_and_isolation(site: Site) -> None:
    spec = {"model": {"source": _upload(site, EXAMPLES / "pi"), "entrypoint": "model:simulate"},
            "sequences": 50}  # fmt: skip
    _, doc, _ = site.call("POST", "/api/v1/runs", body=spec)
    rid = doc["id"]
    status, err, _ = site.call("GET", "/api/v1/runs", user=None)
    assert status == 401 and "token" in err["error"] and err["details"] == []
    status, _, _ = site.server.request("GET", "/api/v1/runs", "not-a-token")
    assert status == 401
    for method, path in [("GET", ""), ("GET", "/results"), ("GET", "/summary"),
                         ("GET", "/logs"), ("DELETE", "")]:  # fmt: skip
        status, err, _ = site.call(method, f"/api/v1/runs/{rid}{path}", user="bob")
        assert status == 404 and rid in err["error"], (method, path, err)
    _, bobs, _ = site.call("GET", "/api/v1/runs", user="bob")
    assert rid not in [r["id"] for r in bobs["runs"]]
    _, alices, _ = site.call("GET", "/api/v1/runs")
    assert rid in [r["id"] for r in alices["runs"]]
    site.wait(rid)


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "code", "where"),
    [
        ("POST", "/api/v1/runs", {"model": {"entrypoint": "model:simulate"}, "sequences": 0,
                                  "resources": {"cpus": -1}, "colour": "red"}, None, 400,
         ["/model/source", "/sequences", "/resources/cpus", "/colour"]),
        ("POST", "/api/v1/runs", {"model": {"source": "/etc", "entrypoint": "m:f"},
                                  "sequences": 5}, None, 400, ["/model/source"]),
        ("POST", "/api/v1/runs", b"not json", {"Content-Type": "application/json"}, 400, []),
        ("POST", "/api/v1/runs", [1, 2], None, 400, []),
        ("POST", "/api/v1/models", b"plain text", {"Content-Type": "application/gzip"}, 400,
         ["body"]),
        ("POST", "/api/v1/models", b"\x1f\x8b" + bytes(2 * 2**20),
         {"Content-Type": "application/gzip"}, 413, []),
        ("POST", "/api/v1/models", b"{}", {"Content-Type": "application/json"}, 415, []),
        ("GET", "/api/v1/runs/nope", None, None, 404, []),
        ("GET", "/api/v1/runs/nope/results?format=xml", None, None, 404, []),
        ("GET", "/api/v1/nothing-here", None, None, 404, []),
        ("PUT", "/api/v1/runs", None, None, 405, []),
    ],
)  # fmt: skip
def test_bad_input_gets_a_json_error_never_a_500(
    site: Site, method: str, path: str, body: Any, headers: dict[str, str] | None, code: int,
    where: list[str],
) -> None:  # fmt: skip
    status, err, text = site.call(method, path, body=body, headers=headers)
    assert status == code, text
    assert isinstance(err, dict) and err["error"] and isinstance(err["details"], list), text
    paths = [d["path"] for d in err["details"]]
    assert all(w in paths for w in where), paths


def test_bad_query_values_name_the_parameter(site: Site) -> None:
    spec = {"model": {"source": _upload(site, EXAMPLES / "pi"), "entrypoint": "model:simulate"},
            "sequences": 20}  # fmt: skip
    _, doc, _ = site.call("POST", "/api/v1/runs", body=spec)
    rid = doc["id"]
    status, err, _ = site.call("GET", f"/api/v1/runs/{rid}/results?format=xml")
    assert status == 400 and err["details"][0]["path"] == "format"
    status, err, _ = site.call("GET", f"/api/v1/runs/{rid}/logs?after=soon")
    assert status == 400 and err["details"][0]["path"] == "after"
    site.wait(rid)


def test_kill_through_the_api_and_logs_follow(site: Site, tmp_path: Path) -> None:
    spec = {"model": {"source": _upload(site, MODELS / "slow"), "entrypoint": "model:simulate"},
            "parameters": {"sleep_s": 0.01}, "sequences": 100000}  # fmt: skip
    _, doc, _ = site.call("POST", "/api/v1/runs", body=spec)
    rid = doc["id"]
    follow = subprocess.Popen([ANCHO, "logs", rid, "-f"], cwd=tmp_path, text=True,
                              env={**os.environ, **site.env("alice")},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while site.call("GET", f"/api/v1/runs/{rid}")[1]["counts"]["ok"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    status, doc, _ = site.call("DELETE", f"/api/v1/runs/{rid}")
    assert status == 202 and doc["kill_requested"] is True
    assert site.wait(rid)["state"] == "KILLED"
    out, err = follow.communicate(timeout=30)  # follow ends when the run does
    assert follow.returncode == 0, err
    assert "run queued" in out and "killed" in out.lower()
    again = ancho("kill", rid, cwd=tmp_path, env=site.env("alice"))
    assert again.code == 0 and "already ended KILLED" in again.stdout


def test_metrics(site: Site) -> None:
    spec = {"model": {"source": _upload(site, EXAMPLES / "pi"), "entrypoint": "model:simulate"},
            "sequences": 300}  # fmt: skip
    _, doc, _ = site.call("POST", "/api/v1/runs", body=spec)
    assert site.wait(doc["id"])["state"] == "FINISHED"
    status, _, text = site.call("GET", "/metrics", user=None)
    assert status == 200
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert all(name.startswith("ancho_") for name in values)
    assert values['ancho_runs{state="FINISHED"}'] >= 1
    assert values['ancho_sequences_total{status="ok"}'] >= 300
    for name in ("ancho_sequences_per_second", "ancho_executors_running",
                 "ancho_offers_declined_total"):  # fmt: skip
        assert name in values
    assert site.call("GET", "/healthz", user=None)[1] == {"status": "ok", "role": "leader"}


def test_a_revoked_token_stops_working(site: Site, tmp_path: Path) -> None:
    store = f"sqlite:///{site.root / 'ancho.db'}"
    tokens = _users(store, tmp_path, "carol")
    time.sleep(MISS_RELOAD_S)  # an unknown token reloads the users at most this often
    assert site.server.request("GET", "/api/v1/runs", tokens["carol"])[0] == 200
    assert ancho("user", "revoke", "carol", "--store", store, cwd=tmp_path).code == 0
    time.sleep(2.5)  # tokens are re-read every 2 s
    assert site.server.request("GET", "/api/v1/runs", tokens["carol"])[0] == 401


def test_sigterm_fails_over_and_a_restart_carries_on(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    token = _users(store, tmp_path, "alice")["alice"]
    env = {"ANCHO_SERVER": "", "ANCHO_TOKEN": token}
    server = LiveServer(store, tmp_path).start()
    env["ANCHO_SERVER"] = server.url
    spec = {"model": {"source": _pack_upload(server, token), "entrypoint": "model:simulate"},
            "parameters": {"sleep_s": 0.01}, "sequences": 600, "seed": 9}  # fmt: skip
    status, doc, _ = server.request("POST", "/api/v1/runs", token, spec)
    assert status == 201
    rid = doc["id"]
    deadline = time.monotonic() + 60
    while server.request("GET", f"/api/v1/runs/{rid}", token)[1]["counts"]["ok"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    started = time.monotonic()
    assert server.stop() == 0 and time.monotonic() - started < 30
    mid = ancho("status", rid, "--store", store, cwd=tmp_path).json()
    assert mid["state"] == "RUNNING" and mid["counts"]["ok"] < 600  # failed over, not ended
    server = LiveServer(store, tmp_path).start()
    try:
        env["ANCHO_SERVER"] = server.url
        deadline = time.monotonic() + 120
        while (doc := server.request("GET", f"/api/v1/runs/{rid}", token)[1])[
            "state"
        ] != "FINISHED":
            assert doc["state"] not in ("FAILED", "KILLED") and time.monotonic() < deadline, doc
            time.sleep(0.3)
        rows = ancho("results", rid, cwd=tmp_path, env=env).jsonl()
        assert [r["sequence"] for r in rows] == list(range(600))
        assert all(r["status"] == "ok" for r in rows)
    finally:
        assert server.stop() == 0


def _pack_upload(server: LiveServer, token: str) -> str:
    status, doc, _ = server.request("POST", "/api/v1/models", token, pack(MODELS / "slow"),
                                    {"Content-Type": "application/gzip"})  # fmt: skip
    assert status == 201, doc
    return str(doc["source"])


def test_submit_without_a_server_or_with_a_bad_token_exits_2(site: Site, tmp_path: Path) -> None:
    none = ancho("submit", str(EXAMPLES / "pi"), cwd=tmp_path,
                 env={"XDG_CONFIG_HOME": str(tmp_path)})  # fmt: skip
    assert none.code == 2 and "--server" in none.stderr and "Traceback" not in none.stderr
    bad = ancho("submit", str(EXAMPLES / "pi"), cwd=tmp_path,
                env={**site.env("alice"), "ANCHO_TOKEN": "wrong"})  # fmt: skip
    assert bad.code == 2 and "token" in bad.stderr and "Traceback" not in bad.stderr
    spec_err = ancho("submit", str(EXAMPLES / "pi"), "--sequences", "0", cwd=tmp_path,
                     env=site.env("alice"))  # fmt: skip
    assert spec_err.code == 2 and "--sequences" in spec_err.stderr


def test_the_config_file_names_server_and_token(site: Site, tmp_path: Path) -> None:
    config = tmp_path / "cfg" / "ancho" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'server = "{site.server.url}"\ntoken = "{site.tokens["bob"]}"\n')
    out = ancho("list", "--json", cwd=tmp_path, env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    assert out.code == 0, out.stderr
    _, bobs, _ = site.call("GET", "/api/v1/runs", user="bob")
    assert [r["id"] for r in out.jsonl()] == [r["id"] for r in bobs["runs"]]


def test_with_cassandra_each_users_runs_live_in_their_keyspace(
    cassandra_url: str, tmp_path: Path
) -> None:
    suffix = os.urandom(3).hex()
    names = (f"sv_a_{suffix}", f"sv_b_{suffix}")
    added = {}
    for name in names:
        out = ancho("user", "add", name, "--store", cassandra_url, cwd=tmp_path)
        assert out.code == 0, out.stderr
        added[name] = out.json()
    server = LiveServer(cassandra_url, tmp_path).start()
    try:
        a, b = names
        env = {"ANCHO_SERVER": server.url, "ANCHO_TOKEN": added[a]["token"],
               "XDG_CONFIG_HOME": str(tmp_path)}  # fmt: skip
        sub = ancho("submit", str(EXAMPLES / "pi"), "--sequences", "400", "--wait",
                    cwd=tmp_path, env=env)  # fmt: skip
        assert sub.code == 0, sub.stderr
        rid = run_id_of(sub)
    finally:
        assert server.stop() == 0
    # The executors wrote with a's role into a's keyspace: a's own URL reads the run...
    own = ancho("results", rid, "--store", added[a]["store"], cwd=tmp_path)
    assert own.code == 0 and len(own.stdout.splitlines()) == 400
    # ...while b's keyspace and the admin keyspace do not have it.
    for url in (added[b]["store"], cassandra_url):
        other = ancho("status", rid, "--store", url, cwd=tmp_path)
        assert other.code == 2 and "no run" in other.stderr


def test_zk_flag_is_checked_before_anything_starts(tmp_path: Path) -> None:
    """``--zk`` must be a zk:// URL, and needs a Mesos master: an embedded master dies
    with its server, so no standby could take over from it."""
    env = {**os.environ, "ANCHO_STORE": f"sqlite:///{tmp_path / 'a.db'}"}
    bad = ancho("server", "--zk", "http://127.0.0.1:2181/ancho", cwd=tmp_path, env=env)
    assert bad.code == 2 and "--zk" in bad.stderr and "zk://" in bad.stderr
    embedded = ancho("server", "--zk", "zk://127.0.0.1:1/ancho", "--bind", "127.0.0.1:0",
                     cwd=tmp_path, env=env, timeout=60)  # fmt: skip
    assert embedded.code == 2 and "--zk needs a Mesos master" in embedded.stderr
    assert "Traceback" not in bad.stderr + embedded.stderr
