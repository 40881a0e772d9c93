"""A model's custom ``summarize`` in its own confined process: real Spark, real Cassandra.

The hostile model's ``summarize`` is handed its owner's real Cassandra password (as if
it had found the run's credential) and goes for another user's keyspace, the machine's
processes and files, and a service on loopback; it reports what it got as its custom
result. A normal one (examples/option) gives what the summary worker computed in
process before.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from e2e import EXAMPLES, ancho, run_id_of, write_spec

from ancho.custom_summary import (
    MAX_DEPTH,
    CustomRequest,
    CustomSummaryFailed,
    parse_result,
    run_custom_summary,
    scratch_folder,
)
from ancho.parquet import write_results_parquet
from ancho.results import SequenceResult
from ancho.store import RunRecord, open_store
from ancho.store.cassandra import CassandraURL

HOSTILE_SUMMARIZE = """\
import json, os, socket


def simulate(params, rng):
    return {"x": float(rng.random())}


def summarize(df, params):
    report = {"rows": df.count()}

    def attempt(name, what):
        try:
            report[name] = what()
        except Exception as exc:
            report[name] = "denied: " + type(exc).__name__

    def cql(query):
        from cassandra.auth import PlainTextAuthProvider
        from cassandra.cluster import Cluster

        auth = PlainTextAuthProvider(params["user"], params["password"])
        cluster = Cluster([params["host"]], port=params["port"], auth_provider=auth,
                          connect_timeout=3, control_connection_timeout=3)
        try:
            return [list(map(str, row)) for row in cluster.connect().execute(query)]
        finally:
            cluster.shutdown()

    def connect(port):
        with socket.create_connection(("127.0.0.1", port), timeout=3):
            return "connected"

    def read(path):
        with open(path) as fh:
            return fh.read()

    report["environ"] = dict(os.environ)
    attempt("keyspaces", lambda: cql("SELECT keyspace_name FROM system_schema.keyspaces"))
    attempt("other_rows", lambda: cql(f"SELECT * FROM {params['other_keyspace']}.results"))
    attempt("cassandra_port", lambda: connect(params["port"]))
    attempt("listener", lambda: connect(params["listener"]))
    attempt("list_proc", lambda: os.listdir("/proc"))
    attempt("proc_environ", lambda: read("/proc/1/environ"))
    attempt("secret_file", lambda: read(params["secret_file"]))
    attempt("work_dir", lambda: os.listdir(params["work_dir"]))
    attempt("write_model", lambda: open(params["model_dir"] + "/planted", "w").close())
    return report
"""


def _user(admin_url: str, tmp_path: Path, prefix: str) -> dict[str, str]:
    out = ancho("user", "add", f"{prefix}_{uuid.uuid4().hex[:8]}", "--store", admin_url,
                cwd=tmp_path)  # fmt: skip
    assert out.code == 0, out.stderr
    user: dict[str, str] = out.json()
    return user


@pytest.mark.slow
def test_a_hostile_summarize_reaches_no_store_and_no_other_user(
    cassandra_admin_url: str, listener: int, tmp_path: Path
) -> None:
    alice = _user(cassandra_admin_url, tmp_path, "alice")
    bob = _user(cassandra_admin_url, tmp_path, "bob")
    bob_store = open_store(bob["store"])
    bob_store.create_run(RunRecord("bobs-run", "s", {}, 1, 2, outputs=["x"]))
    bob_store.write_results("bobs-run", [SequenceResult(0, "ok", {"x": 4242.125}),
                                         SequenceResult(1, "ok", {"x": 4243.5})])  # fmt: skip
    bob_store.put_summary("bobs-run", {"outputs": {}, "custom": {"bob": 1}})
    bob_before = [r.outputs for r in bob_store.iter_results("bobs-run")]

    model = tmp_path / "hostile"
    model.mkdir()
    (model / "model.py").write_text(HOSTILE_SUMMARIZE)
    secret = tmp_path / "secret.txt"
    secret.write_text("a secret of the machine")
    a = CassandraURL.parse(alice["store"])
    spec = {
        "model": {"source": str(model), "entrypoint": "model:simulate",
                  "summary": "model:summarize"},
        "parameters": {"user": a.username, "password": a.password, "host": a.hosts[0],
                       "port": a.port, "other_keyspace": CassandraURL.parse(bob["store"]).keyspace,
                       "listener": listener, "secret_file": str(secret),
                       "work_dir": str(tmp_path / ".ancho"), "model_dir": str(model)},
        "sequences": 40,
    }  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), "--store", alice["store"], "--json",
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    report: dict[str, Any] = run.json()["custom"]
    assert report["rows"] == 40  # it ran, on its own run's data
    for attack in ("keyspaces", "other_rows"):
        assert report[attack] == "denied: NoHostAvailable", (attack, report[attack])
    for attack in ("cassandra_port", "listener"):  # no service of the machine is reachable
        assert report[attack] == "denied: ConnectionRefusedError", (attack, report[attack])
    for attack in ("list_proc", "proc_environ", "secret_file", "work_dir", "write_model"):
        assert report[attack] == "denied: PermissionError", (attack, report[attack])
    assert not (model / "planted").exists()
    environ = report["environ"]
    assert not [k for k in environ if k.startswith(("ANCHO_", "AWS_", "MESOS_", "PIP_"))]
    dump = json.dumps(report)
    for needle in ("4242.125", "a secret of the machine", bob["token"], alice["token"]):
        assert needle not in dump
    assert a.password not in json.dumps(environ)

    # Bob's run is untouched, and so is his view of his own keyspace.
    assert [r.outputs for r in bob_store.iter_results("bobs-run")] == bob_before
    assert bob_store.get_summary("bobs-run") == {"outputs": {}, "custom": {"bob": 1}}
    bob_store.close()
    status = ancho("status", run_id_of(run), "--store", alice["store"], cwd=tmp_path).json()
    assert status["state"] == "FINISHED"


OPTION_PARAMS = {"spot": 100.0, "strike": 105.0, "rate": 0.03, "sigma": 0.25, "maturity": 1.0,
                 "steps": 12}  # fmt: skip


def _option_rows(n: int) -> list[SequenceResult]:
    import numpy as np

    rng = np.random.default_rng(11)
    payoff = np.maximum(rng.normal(3.0, 6.0, size=n), 0.0)
    return [
        SequenceResult(
            i, "ok", {"payoff": float(p), "s_t": 100.0 + float(p), "in_the_money": bool(p > 0)}
        )
        for i, p in enumerate(payoff)
    ]


def _request(scratch: Path, model_dir: Path, entrypoint: str) -> CustomRequest:
    return CustomRequest(
        model_dir=str(model_dir),
        entrypoint=entrypoint,
        requirements_dir=None,
        params=OPTION_PARAMS,
        outputs=["payoff", "s_t", "in_the_money"],
        parquet=str(scratch / "input" / "results.parquet"),
        master="local[2]",
    )


@pytest.mark.slow
def test_a_normal_custom_summary_gives_what_it_gave_in_process(tmp_path: Path) -> None:
    from ancho.model import resolve
    from ancho.spark import spark_session, stop_spark
    from ancho.summary import compute_summary

    rows = _option_rows(3000)
    with scratch_folder() as scratch:
        write_results_parquet(rows, scratch / "input" / "results.parquet", ok_only=True)
        confined = run_custom_summary(
            _request(scratch, EXAMPLES / "option", "model:summarize"), scratch
        )
        # The summary worker's way before: the model imported in its own process.
        try:
            spark = spark_session("local[2]")
            before = compute_summary(
                spark, scratch / "input" / "results.parquet", ["payoff", "s_t", "in_the_money"],
                params=OPTION_PARAMS, custom=resolve(EXAMPLES / "option", "model:summarize"),
            )["custom"]  # fmt: skip
        finally:
            stop_spark()
    assert set(confined) == {"price", "ci95_low", "ci95_high", "black_scholes"}
    assert confined == before


def _model(tmp_path: Path, source: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.py").write_text(source)
    return folder


def _run(tmp_path: Path, source: str, **kwargs: Any) -> dict[str, Any]:
    model = _model(tmp_path, source)
    with scratch_folder() as scratch:
        write_results_parquet(_option_rows(10), scratch / "input" / "results.parquet")
        return run_custom_summary(_request(scratch, model, "model:summarize"), scratch, **kwargs)


def test_a_model_that_cannot_load_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CustomSummaryFailed, match="custom summary: model 'model:summarize'"):
        _run(tmp_path, "import not_a_module_anywhere\n")


def test_a_process_that_dies_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(CustomSummaryFailed, match="exited with status 3 without a result"):
        _run(tmp_path, "import os\nos._exit(3)\n")


def test_a_process_that_hangs_is_killed(tmp_path: Path) -> None:
    with pytest.raises(CustomSummaryFailed, match="took more than 2 s"):
        _run(tmp_path, "import time\ntime.sleep(60)\n", timeout_s=2)


def test_a_flood_on_the_reply_is_cut_off(tmp_path: Path) -> None:
    # The reply's descriptor is the lowest free one: model code can find and write it.
    flood = "import os\nfor fd in range(3, 12):\n    try:\n        os.write(fd, b'[' * 2**21)\n" \
            "    except OSError:\n        pass\n"  # fmt: skip
    with pytest.raises(CustomSummaryFailed, match="larger than 1024 KiB"):
        _run(tmp_path, flood)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"custom": {"x": NaN}}', "not valid JSON"),
        (b'{"custom": {"x": Infinity}}', "not valid JSON"),
        (b'{"custom": {"x": 1e999}}', "not finite"),
        (b'{"custom": [1, 2]}', "not a JSON object"),
        (b'{"custom": {}, "more": 1}', "not a JSON object"),
        (b'{"custom": {"x": 1}}{"custom": {}}', "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (
            ('{"custom": ' + '{"a": ' * (MAX_DEPTH + 2) + "1" + "}" * (MAX_DEPTH + 3)).encode(),
            "nested more than",
        ),
    ],
)
def test_what_comes_back_is_checked(raw: bytes, problem: str) -> None:
    with pytest.raises(CustomSummaryFailed, match=problem):
        parse_result(raw)


def test_plain_results_pass() -> None:
    raw = b'{"custom": {"p": 1.5, "n": 3, "ok": true, "none": null, "s": "x", "l": [1, {"a": 2}]}}'
    assert parse_result(raw)["custom"]["l"] == [1, {"a": 2}]
    assert parse_result(b'{"failed": "boom"}') == {"failed": "boom"}


def test_the_launcher_refuses_bad_arguments() -> None:
    import sys

    proc = subprocess.run([sys.executable, "-m", "ancho.confined", "{}"], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert proc.returncode != 0 and "usage" in proc.stderr
