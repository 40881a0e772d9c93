"""Docker executors: the executor image run by the embedded agent's Docker containerizer.

Real dockerd (started by scripts/docker_engine.sh), real images (docker/build-images.sh),
real Cassandra or the SQLite file as the store (containers reach Cassandra over the
host network and share the SQLite file's folder).
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from e2e import ANCHO, EXAMPLES, MODELS, ancho, probe_sandbox, run_id_of, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture
def user_store(cassandra_admin_url: str, tmp_path: Path) -> str:
    """A fresh Cassandra user's store URL."""
    name = f"dock_{uuid.uuid4().hex[:8]}"
    out = ancho("user", "add", name, "--store", cassandra_admin_url, cwd=tmp_path)
    assert out.code == 0, out.stderr
    url: str = out.json()["store"]
    return url


def _containers() -> list[str]:
    out = subprocess.run(["docker", "ps", "-aq", "--filter", "label=ancho.mesos.executor"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.split()


def test_docker_and_process_give_identical_outputs(
    executor_image: str, user_store: str, tmp_path: Path
) -> None:
    args = ["run", str(EXAMPLES / "option"), "--sequences", "2000", "--store", user_store]
    process = ancho(*args, "--containerizer", "process", "--json", cwd=tmp_path)
    docker = ancho(*args, "--containerizer", "docker", "--json", cwd=tmp_path)
    assert process.code == 0 and docker.code == 0, process.stderr + docker.stderr
    a = ancho("results", run_id_of(process), "--store", user_store, cwd=tmp_path).stdout
    b = ancho("results", run_id_of(docker), "--store", user_store, cwd=tmp_path).stdout
    assert a == b and len(a.splitlines()) == 2000
    assert docker.json()["custom"]["black_scholes"] == process.json()["custom"]["black_scholes"]
    assert _containers() == []  # no container outlives its run


def test_executor_runs_unprivileged_within_its_limits(
    executor_image: str, user_store: str, tmp_path: Path
) -> None:
    spec = {
        "model": {"source": str(MODELS / "inside"), "entrypoint": "model:simulate"},
        "sequences": 20,
        "resources": {"cpus": 1.0, "mem_mb": 768},
        "executor": {"containerizer": "docker"},
    }
    run = ancho("run", str(write_spec(tmp_path, spec)), "--store", user_store, "--json",
                cwd=tmp_path)  # fmt: skip
    assert run.code == 0, run.stderr
    rows = ancho("results", run_id_of(run), "--store", user_store, cwd=tmp_path).jsonl()
    seen = rows[0]["outputs"]
    # The framework registers as this test's user (root): the executor gives up root for
    # the image's own user (ancho.sandbox.identity).
    assert seen["uid"] == 1000
    # --memory from the executor's resources (spec minus nothing: ~768 MB); CPU is
    # --cpu-shares only: no CFS quota unless the agent enables it, as Mesos.
    assert 760 * 2**20 <= seen["mem_limit"] <= 768 * 2**20
    assert seen["cpu_quota"] in (-1, -2)  # cgroup v1 "-1", v2 "max"


def test_missing_image_fails_the_run_with_the_reason(
    executor_image: str, user_store: str, tmp_path: Path
) -> None:
    spec = {
        "model": {"source": str(EXAMPLES / "pi"), "entrypoint": "model:simulate"},
        "sequences": 100,
        "executor": {"containerizer": "docker", "image": "ancho/no-such-image:1"},
    }
    run = ancho("run", str(write_spec(tmp_path, spec)), "--store", user_store, cwd=tmp_path)
    assert run.code == 1
    status = ancho("status", run_id_of(run), "--store", user_store, cwd=tmp_path).json()
    assert status["state"] == "FAILED"
    assert "REASON_CONTAINER_LAUNCH_FAILED" in status["reason"]
    # Pulled first, as Mesos does; no registry answers here.
    assert "Failed to run 'docker pull ancho/no-such-image:1'" in status["reason"]
    assert _containers() == []


def test_kill_in_the_middle_leaves_no_container(
    executor_image: str, user_store: str, tmp_path: Path
) -> None:
    spec = {
        "model": {"source": str(MODELS / "slow"), "entrypoint": "model:simulate"},
        "parameters": {"sleep_s": 0.02},
        "sequences": 100000,
        "executor": {"containerizer": "docker"},
    }
    proc = subprocess.Popen([ANCHO, "run", str(write_spec(tmp_path, spec)), "--store", user_store],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    rid = proc.stdout.readline().split()[1]
    deadline = time.monotonic() + 120
    while not _containers() or ancho("status", rid, "--store", user_store,
                                     cwd=tmp_path).json()["counts"]["ok"] == 0:  # fmt: skip
        assert time.monotonic() < deadline and proc.poll() is None, "never ran in Docker"
        time.sleep(0.5)
    assert ancho("kill", rid, "--store", user_store, cwd=tmp_path).code == 0
    assert proc.wait(timeout=120) == 1
    status = ancho("status", rid, "--store", user_store, cwd=tmp_path).json()
    assert status["state"] == "KILLED"
    assert _containers() == []


def test_docker_shares_the_sqlite_store_and_matches_process(
    executor_image: str, tmp_path: Path
) -> None:
    args = ["run", str(EXAMPLES / "pi"), "--sequences", "300", "--seed", "7"]
    process = ancho(*args, "--containerizer", "process", cwd=tmp_path)
    docker = ancho(*args, "--containerizer", "docker", cwd=tmp_path)
    assert process.code == 0 and docker.code == 0, process.stderr + docker.stderr
    a = ancho("results", run_id_of(process), cwd=tmp_path).stdout
    b = ancho("results", run_id_of(docker), cwd=tmp_path).stdout
    assert a == b and len(a.splitlines()) == 300
    assert _containers() == []


def test_the_sandbox_holds_in_docker(executor_image: str, listener: int, tmp_path: Path) -> None:
    seen = probe_sandbox(tmp_path, listener, containerizer="docker")
    assert seen["connected"] is False  # no network for model code...
    assert seen["uid"] != 0  # ...not root...
    assert seen["writes_cwd"] is True  # ...the sandbox is writable...
    assert seen["writes_root"] is False and seen["writes_usr"] is False  # ...nothing else
    assert seen["cap_eff"] == 0 and seen["no_new_privs"] == 1
    assert seen["sees_store"] is False  # the store's credentials stay with the executor
    assert _containers() == []


def test_network_host_is_the_explicit_opt_out(
    executor_image: str, listener: int, tmp_path: Path
) -> None:
    seen = probe_sandbox(tmp_path, listener, containerizer="docker", network="host")
    assert seen["connected"] is True
    assert seen["writes_root"] is False and seen["uid"] != 0  # the rest of the sandbox stays


def test_a_model_over_its_memory_limit_fails_with_out_of_memory(
    executor_image: str, tmp_path: Path
) -> None:
    spec = {
        "model": {"source": str(MODELS / "hog"), "entrypoint": "model:simulate"},
        "parameters": {"mb": 1024},
        "sequences": 4,
        "max_attempts": 2,
        "resources": {"mem_mb": 400},
        "executor": {"containerizer": "docker"},
    }
    started = time.monotonic()
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert run.code == 1, run.stderr
    assert time.monotonic() - started < 120  # failed, not hung
    rows = ancho("results", run_id_of(run), cwd=tmp_path).jsonl()
    assert [r["status"] for r in rows] == ["failed"] * 4
    assert all("out of memory" in r["error"]["message"] for r in rows), rows[0]
    assert _containers() == []


def test_requirements_installed_once_per_agent_for_containers(
    executor_image: str, tmp_path: Path
) -> None:
    spec = {
        "model": {"source": str(MODELS / "needs_tomli_w"), "entrypoint": "model:simulate",
                  "requirements": "requirements.txt"},
        "sequences": 30,
        "executor": {"containerizer": "docker"},
    }  # fmt: skip
    path = write_spec(tmp_path, spec)
    first = ancho("run", str(path), "--json", cwd=tmp_path)
    assert first.code == 0, first.stderr
    envs = tmp_path / ".ancho" / "cache-docker" / "envs"
    (env,) = [p for p in envs.iterdir() if p.is_dir()]
    assert (env / "tomli_w").is_dir()  # installed by pip inside the container
    stamp = env.stat().st_mtime_ns
    second = ancho("run", str(path), "--json", cwd=tmp_path)
    assert second.code == 0 and second.json()["ok"] == 30
    assert [p for p in envs.iterdir() if p.is_dir()] == [env] and env.stat().st_mtime_ns == stamp
    assert _containers() == []


def test_an_uploaded_model_runs_in_docker_from_the_agents_cache(
    executor_image: str, tmp_path: Path
) -> None:
    from ancho.client import pack
    from ancho.store import open_store

    data = pack(EXAMPLES / "pi")
    digest = hashlib.sha256(data).hexdigest()
    open_store(f"sqlite:///{tmp_path / '.ancho' / 'ancho.db'}").put_model(digest, data)
    spec = {"model": {"source": f"sha256:{digest}", "entrypoint": "model:simulate"},
            "sequences": 200, "seed": 4, "executor": {"containerizer": "docker"}}  # fmt: skip
    docker = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert docker.code == 0, docker.stderr
    local = ancho("run", str(EXAMPLES / "pi"), "--sequences", "200", "--seed", "4", cwd=tmp_path)
    a = ancho("results", run_id_of(docker), cwd=tmp_path).stdout
    b = ancho("results", run_id_of(local), cwd=tmp_path).stdout
    assert a == b and len(a.splitlines()) == 200
    assert (tmp_path / ".ancho" / "cache-docker" / "models").is_dir()  # fetched once per agent
