"""``ancho run`` end to end: embedded Mesos, real executors, SQLite, Spark, the CLI.

Each test runs the real command in its own folder, as a user would. Statistical checks
compare with analytic answers within 4 standard errors.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from e2e import ANCHO, EXAMPLES, MODELS, ancho, moments, run_id_of, write_spec

pytestmark = pytest.mark.slow


def _outputs(rows: list[dict], name: str) -> np.ndarray:
    return np.array([r["outputs"][name] for r in rows if r["status"] == "ok"], dtype=float)


def test_pi_example_matches_pi_and_the_stored_results(tmp_path: Path) -> None:
    samples, n = 500, 3000
    run = ancho("run", str(EXAMPLES / "pi"), "--sequences", str(n), "-p", f"samples={samples}",
                "--json", cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    doc = run.json()
    rid = run_id_of(run)
    assert doc["run"] == rid and doc["state"] == "FINISHED" and doc["seed"] == 42
    assert (doc["sequences"], doc["ok"], doc["failed"]) == (n, n, 0)
    pi = doc["outputs"]["pi"]
    p = math.pi / 4
    se = 4 * math.sqrt(p * (1 - p) / samples) / math.sqrt(n)
    assert abs(pi["mean"] - math.pi) < 4 * se
    # The analytic spread of one sequence's estimate, within sampling error of stddev.
    assert abs(pi["stddev"] - se * math.sqrt(n)) < 4 * se * math.sqrt(n) / math.sqrt(2 * (n - 1))

    rows = ancho("results", rid, "--format", "jsonl", cwd=tmp_path).jsonl()
    assert [r["sequence"] for r in rows] == list(range(n))
    for name in ("pi", "inside"):
        expected = moments(_outputs(rows, name))
        got = doc["outputs"][name]
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), (name, key)
        data = np.sort(_outputs(rows, name))
        for q, v in got["quantiles"].items():
            # percentile_approx returns a data value whose rank range (ties!) holds q.
            below = np.searchsorted(data, v, side="left") / n
            upto = np.searchsorted(data, v, side="right") / n
            tol = 0.001 + 1 / n
            assert v in data and below - tol <= float(q) <= upto + tol, (name, q, v)


def test_option_price_matches_black_scholes(tmp_path: Path) -> None:
    run = ancho("run", str(EXAMPLES / "option"), "--sequences", "20000", "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    doc = run.json()
    payoff = doc["outputs"]["payoff"]
    exact = doc["custom"]["black_scholes"]
    assert abs(exact - 7.1280646692617395) < 1e-9  # independent of the run
    assert abs(payoff["mean"] - exact) < 4 * payoff["sem"]
    assert doc["custom"]["price"] == pytest.approx(payoff["mean"], rel=1e-12)
    assert doc["custom"]["ci95_low"] < exact < doc["custom"]["ci95_high"] or (
        abs(payoff["mean"] - exact) > 1.96 * payoff["sem"]
    )
    itm = doc["outputs"]["in_the_money"]  # a bool output, summarised as 0/1
    assert 0 < itm["mean"] < 1 and itm["min"] == 0 and itm["max"] == 1


def test_first_line_is_the_run_id_and_table_follows(tmp_path: Path) -> None:
    run = ancho("run", str(EXAMPLES / "pi"), "--sequences", "200", cwd=tmp_path)
    assert run.code == 0, run.stderr
    first = run.stdout.splitlines()[0]
    assert first.startswith("run ") and len(first.split()) == 2
    assert "pi" in run.stdout and "FINISHED" in run.stdout
    assert "200/200" in run.stderr  # the progress bar
    assert (tmp_path / ".ancho" / "ancho.db").is_file()


def test_same_seed_same_outputs_whatever_executors_and_batches(tmp_path: Path) -> None:
    model = MODELS / "crashy"
    spec = {
        "model": {"source": str(model), "entrypoint": "model:simulate"},
        "parameters": {"marker": str(tmp_path / "never"), "crash_after": 10**9},
        "sequences": 1500,
        "seed": 2024,
    }
    path = write_spec(tmp_path, spec)
    one = ancho("run", str(path), "--executors", "1", "--json", cwd=tmp_path,
                env={"ANCHO_BATCH_SIZE": "7"})  # fmt: skip
    two = ancho("run", str(path), "--executors", "2", "--json", cwd=tmp_path)
    assert one.code == 0 and two.code == 0, one.stderr + two.stderr
    a = ancho("results", run_id_of(one), cwd=tmp_path).stdout
    b = ancho("results", run_id_of(two), cwd=tmp_path).stdout
    assert a == b and len(a.splitlines()) == 1500
    assert one.json()["outputs"] == two.json()["outputs"]  # the summary, to the bit
    other = ancho("run", str(path), "--seed", "2025", "--json", cwd=tmp_path)
    assert ancho("results", run_id_of(other), cwd=tmp_path).stdout != a


def test_lost_executor_batch_is_retried_and_outputs_are_unchanged(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "crashy"), "entrypoint": "model:simulate"},
        # Relative: the model's scratch folder, the one place its sandbox lets it write,
        # which outlives its process within the executor.
        # The model's process sends rows in chunks of 1024: the first is stored, then it
        # dies, so the retry starts at 1024, inside a block (blocks of 20 sequences).
        "parameters": {"marker": "crashed", "crash_after": 1500},
        "sequences": 20_000,
        "seed": 5,
    }
    crashed = ancho("run", str(write_spec(tmp_path, spec)), "--executors", "1", "--json",
                    cwd=tmp_path, env={"ANCHO_BATCH_SIZE": "5000"})  # fmt: skip
    assert crashed.code == 0, crashed.stderr
    # The model's process really died once.
    assert [p.name for p in (tmp_path / ".ancho").rglob("scratch/crashed")] == ["crashed"]
    rid = run_id_of(crashed)
    rows = ancho("results", rid, cwd=tmp_path).jsonl()
    assert [r["sequence"] for r in rows] == list(range(20_000))
    assert all(r["status"] == "ok" for r in rows)
    logs = ancho("logs", rid, cwd=tmp_path).stdout
    assert "will be retried (attempt 2 of 3)" in logs
    assert "batch from 1024 starts inside a block: its 4 earlier rows were read back" in logs

    spec["parameters"]["crash_after"] = 10**9
    clean = ancho("run", str(write_spec(tmp_path, spec, "clean.json")), "--json", cwd=tmp_path)
    assert ancho("results", run_id_of(clean), cwd=tmp_path).jsonl() == rows
    # The retried block's partial is the same bits as the clean run's.
    assert crashed.json()["outputs"] == clean.json()["outputs"]


def test_failing_sequences_fail_the_run_but_keep_good_results(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "flaky"), "entrypoint": "model:simulate"},
        "parameters": {"p_fail": 0.2},
        "sequences": 1000,
        "seed": 11,
    }
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=tmp_path)
    assert run.code == 1, run.stderr
    doc = run.json()
    assert doc["state"] == "FAILED"
    assert doc["ok"] + doc["failed"] == 1000
    # Failure probability 0.2: the count is binomial, within 4 standard errors.
    assert abs(doc["failed"] - 200) < 4 * math.sqrt(1000 * 0.2 * 0.8)
    assert doc["outputs"]["x"]["count"] == doc["ok"]
    rows = ancho("results", doc["run"], cwd=tmp_path).jsonl()
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == doc["failed"]
    assert failed[0]["error"]["type"] == "ValueError"
    assert failed[0]["error"]["message"] == "unlucky draw"
    assert "Traceback" in failed[0]["error"]["traceback"]
    assert failed[0]["outputs"] == {}
    csv_out = ancho("results", doc["run"], "--format", "csv", cwd=tmp_path).stdout.splitlines()
    assert csv_out[0] == "sequence,status,x" and len(csv_out) == 1001


def test_model_that_cannot_start_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "broken"), "entrypoint": "model:simulate",
                  "setup": "model:setup"},
        "sequences": 100000,
    }  # fmt: skip
    started = time.monotonic()
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert run.code == 1
    assert "parameters.csv not found" in run.stdout
    status = ancho("status", run_id_of(run), cwd=tmp_path).json()
    assert status["state"] == "FAILED" and "FileNotFoundError" in status["reason"]
    assert time.monotonic() - started < 60


def test_kill_stops_a_running_run(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"},
        "parameters": {"sleep_s": 0.02},
        "sequences": 100000,
    }
    path = write_spec(tmp_path, spec)
    proc = subprocess.Popen([ANCHO, "run", str(path)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None
    rid = proc.stdout.readline().split()[1]
    deadline = time.monotonic() + 60
    while ancho("status", rid, cwd=tmp_path).json()["counts"]["ok"] == 0:
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    killed = ancho("kill", rid, cwd=tmp_path)
    assert killed.code == 0 and "kill requested" in killed.stdout
    assert proc.wait(timeout=60) == 1
    status = ancho("status", rid, cwd=tmp_path).json()
    assert status["state"] == "KILLED"
    assert 0 < status["counts"]["ok"] < 100000
    assert ancho("kill", rid, cwd=tmp_path).stdout.startswith(f"run {rid} already ended")


def test_query_commands(tmp_path: Path) -> None:
    run = ancho("run", str(EXAMPLES / "pi"), "--sequences", "100", "-p", "samples=10",
                cwd=tmp_path)  # fmt: skip
    rid = run_id_of(run)
    listing = ancho("list", cwd=tmp_path)
    assert rid in listing.stdout and "FINISHED" in listing.stdout
    status = ancho("status", rid, cwd=tmp_path).json()
    assert status["counts"] == {"total": 100, "ok": 100, "failed": 0, "running": 0}
    assert status["seed"] == 42 and status["finished_at"] >= status["created_at"]
    table = ancho("summary", rid, "--format", "table", cwd=tmp_path).stdout
    assert "stddev" in table and "pi" in table
    summary = ancho("summary", rid, "--format", "json", cwd=tmp_path).json()
    assert set(summary["outputs"]["pi"]["quantiles"]) == {
        "0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99"
    }  # fmt: skip
    assert "all sequences in" in ancho("logs", rid, cwd=tmp_path).stdout
    out = tmp_path / "r.parquet"
    assert ancho("results", rid, "--format", "parquet", "-o", str(out), cwd=tmp_path).code == 0
    import pyarrow.parquet as pq

    table_pq = pq.read_table(out)
    assert table_pq.num_rows == 100 and table_pq.column("sequence").to_pylist() == list(range(100))
    # Another store holds nothing of it.
    other = ancho("status", rid, "--store", f"sqlite:///{tmp_path / 'other.db'}", cwd=tmp_path)
    assert other.code == 2 and "no run" in other.stderr and "Traceback" not in other.stderr


BAD_SPECS = [
    ({"model": {"source": "."}, "sequences": 10}, "/model/entrypoint: is required"),
    ({"model": {"source": ".", "entrypoint": "simulate"}, "sequences": 10}, "/model/entrypoint"),
    ({"model": {"source": ".", "entrypoint": "m:f"}, "sequences": 0}, "/sequences: must be >= 1"),
    (
        {"model": {"source": ".", "entrypoint": "m:f"}, "sequences": 1, "resources": {"cpus": 0}},
        "/resources/cpus: must be > 0",
    ),
    ({"model": {"source": ".", "entrypoint": "m:f"}, "sequences": 1, "colour": 1}, "/colour"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_spec_exits_2_naming_the_field(tmp_path: Path, spec: dict, message: str) -> None:
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path, timeout=60)
    assert run.code == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert not (tmp_path / ".ancho" / "ancho.db").exists() or "run " not in run.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sequences", "0"], "--sequences"),
        (["-p", "samples"], "-p"),
        (["--seed", "-1"], "--seed"),
        (["--containerizer", "lxc"], "--containerizer"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(tmp_path: Path, args: list[str], message: str) -> None:
    run = ancho("run", str(EXAMPLES / "pi"), *args, cwd=tmp_path, timeout=60)
    assert run.code == 2 and message in run.stderr and "Traceback" not in run.stderr


def test_missing_model_and_bad_json_exit_2(tmp_path: Path) -> None:
    missing = ancho("run", str(tmp_path / "nope"), cwd=tmp_path, timeout=60)
    assert missing.code == 2 and "no such model directory" in missing.stderr
    (tmp_path / "bad.json").write_text("{not json")
    bad = ancho("run", str(tmp_path / "bad.json"), cwd=tmp_path, timeout=60)
    assert bad.code == 2 and "bad.json" in bad.stderr and "not valid JSON" in bad.stderr
    no_module = write_spec(
        tmp_path,
        {
            "model": {"source": str(tmp_path), "entrypoint": "nomodule:simulate"},
            "sequences": 5,
        },
    )
    run = ancho("run", str(no_module), cwd=tmp_path)
    assert run.code == 1 and "nomodule" in run.stdout and "Traceback" not in run.stderr


def test_tarball_model_source_relative_to_the_spec(tmp_path: Path) -> None:
    import tarfile

    with tarfile.open(tmp_path / "option.tar.gz", "w:gz") as tar:
        tar.add(EXAMPLES / "option" / "model.py", arcname="option/model.py")
    spec = json.loads((EXAMPLES / "option" / "ancho.json").read_text())
    spec["model"]["source"] = "option.tar.gz"  # relative to the spec file's folder
    spec["sequences"] = 300
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=elsewhere)
    assert run.code == 0, run.stderr
    doc = run.json()
    assert doc["ok"] == 300 and "black_scholes" in doc["custom"]  # setup and summarize ran


def test_users_with_the_sqlite_store(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'u.db'}"
    added = ancho("user", "add", "dana", "--store", store, cwd=tmp_path)
    assert added.code == 0, added.stderr
    user = added.json()
    assert user["user"] == "dana" and user["store"] == store and len(user["token"]) >= 40
    again = ancho("user", "add", "dana", "--store", store, cwd=tmp_path)
    assert again.code == 2 and "exists already" in again.stderr
    bad = ancho("user", "add", "Not A Name", "--store", store, cwd=tmp_path)
    assert bad.code == 2 and "must match" in bad.stderr
    assert ancho("user", "revoke", "dana", "--store", store, cwd=tmp_path).code == 0
    listed = ancho("user", "list", "--store", store, cwd=tmp_path).jsonl()
    assert listed == [{"user": "dana", "revoked": True, "max_cpus": None,
                       "created_at": listed[0]["created_at"], "store": store}]  # fmt: skip
    assert user["token"] not in ancho("user", "list", "--store", store, cwd=tmp_path).stdout


def test_requirements_installed_once_and_cached(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "needs_tomli_w"), "entrypoint": "model:simulate",
                  "requirements": "requirements.txt"},
        "sequences": 50,
    }  # fmt: skip
    path = write_spec(tmp_path, spec)
    first = ancho("run", str(path), "--json", cwd=tmp_path)
    assert first.code == 0, first.stderr
    envs = tmp_path / ".ancho" / "cache" / "envs"
    (env,) = [p for p in envs.iterdir() if p.is_dir()]
    assert (env / "tomli_w").is_dir()
    stamp = env.stat().st_mtime_ns
    second = ancho("run", str(path), "--json", cwd=tmp_path)
    assert second.code == 0 and second.json()["ok"] == 50
    assert [p for p in envs.iterdir() if p.is_dir()] == [env]  # nothing installed again
    assert env.stat().st_mtime_ns == stamp


def test_failed_requirements_install_fails_the_run_with_pips_message(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.py").write_text((MODELS / "flaky" / "model.py").read_text())
    (model / "requirements.txt").write_text("this is not a requirement line !!\n")
    spec = {"model": {"source": str(model), "entrypoint": "model:simulate",
                      "requirements": "requirements.txt"}, "sequences": 1000}  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert run.code == 1 and "Traceback" not in run.stderr
    status = ancho("status", run_id_of(run), cwd=tmp_path).json()
    assert status["state"] == "FAILED"
    assert "installing requirements.txt failed" in status["reason"]
    assert "Invalid requirement" in status["reason"]  # pip's own words
