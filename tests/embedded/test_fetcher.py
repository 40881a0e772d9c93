"""The agent's fetcher, as Mesos 1.11's: CommandInfo.uris land in the sandbox before
the executor starts, over real HTTP (a loopback http.server) and from local files."""

from __future__ import annotations

import getpass
import gzip
import http.server
import io
import os
import stat
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ancho.embedded import EmbeddedCluster

from .conftest import EXECUTOR, DriverFactory, make_task, running_report, unb64

#: The executor shipped as a URI runs from the sandbox, as `python3` on a PATH the
#: CommandInfo gives (the agent's own PATH does not reach executors).
PATH = f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin"


class Files:
    """A real HTTP server on loopback serving a folder, counting the GETs per path."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.gets: Counter[str] = Counter()
        files = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                files.gets[self.path] += 1
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def files(tmp_path: Path) -> Iterator[Files]:
    root = tmp_path / "served"
    root.mkdir()
    served = Files(root)
    yield served
    served.close()


def _tar_gz(path: Path, members: dict[str, tuple[bytes, int]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, (data, mode) in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return path


def _shipped_executor(offer: Any, task_id: str, uris: list[dict[str, Any]], **extra: Any) -> Any:
    command = {
        "value": "python3 executor_script.py",
        "uris": uris,
        "environment": {"variables": [{"name": "PATH", "value": PATH}]},
    }
    return make_task(offer, task_id, {"result": "shipped"}, command=command, **extra)


def _sandbox(status: Any) -> Path:
    return Path(running_report(status)["env"]["MESOS_SANDBOX"])


def test_executor_shipped_as_a_tar_gz_over_http(
    cluster: EmbeddedCluster, start_framework: DriverFactory, files: Files
) -> None:
    _tar_gz(files.root / "executor.tar.gz", {"executor_script.py": (EXECUTOR.read_bytes(), 0o644)})
    driver, sched = start_framework()
    offer = sched.new_offer()
    uri = {"value": files.url("executor.tar.gz"), "extract": True}
    driver.launchTasks(offer["id"], [_shipped_executor(offer, "ship", [uri])])
    finished = sched.wait_status("ship", "TASK_FINISHED")
    assert unb64(finished["data"]) == b"shipped"
    sandbox = _sandbox(sched.wait_status("ship", "TASK_RUNNING"))
    # Without the cache, the archive stays beside what it held.
    assert (sandbox / "executor.tar.gz").is_file()
    assert (sandbox / "executor_script.py").read_bytes() == EXECUTOR.read_bytes()
    assert "Fetching URI" in (sandbox / "stderr").read_text()
    assert files.gets["/executor.tar.gz"] == 1


def test_uri_options(
    cluster: EmbeddedCluster, start_framework: DriverFactory, files: Files, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (local / "notes.txt.gz").write_bytes(gzip.compress(b"unpacked notes"))
    kept = _tar_gz(local / "kept.tar.gz", {"inside-kept": (b"x", 0o644)})
    with zipfile.ZipFile(files.root / "bundle.zip", "w") as bundle:
        script = zipfile.ZipInfo("bin/run.sh")
        script.external_attr = (stat.S_IFREG | 0o755) << 16
        bundle.writestr(script, "#!/bin/sh\n")
        bundle.writestr("data/values.txt", "1 2 3")
    _tar_gz(files.root / "packed.tgz", {"never-extracted": (b"x", 0o644)})
    uris = [
        {"value": str(EXECUTOR)},  # a plain absolute path; not an archive: copied
        {"value": f"file://{local / 'tool.sh'}", "executable": True},
        {"value": f"file://{kept}", "extract": False, "output_file": "sub/dir/kept.tar.gz"},
        {"value": f"file://{local / 'notes.txt.gz'}"},  # a bare .gz is gunzipped
        {"value": files.url("bundle.zip")},  # extract is true by default
        {"value": files.url("packed.tgz"), "executable": True},  # executable: no extraction
        {"value": files.url("bundle.zip") + "?v=2", "output_file": "renamed.zip"},
    ]
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [_shipped_executor(offer, "opts", uris)])
    sandbox = _sandbox(sched.wait_status("opts", "TASK_RUNNING"))
    sched.wait_status("opts", "TASK_FINISHED")
    assert (sandbox / "executor_script.py").is_file()
    assert (sandbox / "tool.sh").stat().st_mode & 0o777 == 0o755
    assert (sandbox / "sub" / "dir" / "kept.tar.gz").is_file()
    assert not (sandbox / "inside-kept").exists()
    assert (sandbox / "notes.txt").read_bytes() == b"unpacked notes"
    assert (sandbox / "notes.txt.gz").is_file()
    assert (sandbox / "data" / "values.txt").read_text() == "1 2 3"
    assert os.access(sandbox / "bin" / "run.sh", os.X_OK)
    assert (sandbox / "packed.tgz").stat().st_mode & 0o777 == 0o755
    assert not (sandbox / "never-extracted").exists()
    assert (sandbox / "renamed.zip").is_file()


def test_cache_downloads_a_uri_once_per_user(
    cluster: EmbeddedCluster, start_framework: DriverFactory, files: Files
) -> None:
    _tar_gz(files.root / "cached.tar.gz", {"executor_script.py": (EXECUTOR.read_bytes(), 0o644)})
    _tar_gz(files.root / "direct.tar.gz", {"unused": (b"x", 0o644)})
    cached = {"value": files.url("cached.tar.gz"), "cache": True}
    direct = {"value": files.url("direct.tar.gz")}
    driver, sched = start_framework()
    offer = sched.new_offer()
    tasks = [
        _shipped_executor(offer, f"c{i}", [cached, direct], executor_id=f"e{i}") for i in range(3)
    ]
    driver.launchTasks(offer["id"], tasks)
    sandboxes = [_sandbox(sched.wait_status(f"c{i}", "TASK_RUNNING")) for i in range(3)]
    for i in range(3):
        sched.wait_status(f"c{i}", "TASK_FINISHED")
    assert files.gets["/cached.tar.gz"] == 1
    assert files.gets["/direct.tar.gz"] == 3
    for sandbox in sandboxes:
        assert (sandbox / "executor_script.py").is_file()
        # From the cache only what the archive held lands in the sandbox.
        assert not (sandbox / "cached.tar.gz").exists()
        assert (sandbox / "direct.tar.gz").is_file()
    entries = list((cluster.work_dir / "fetch" / getpass.getuser()).iterdir())
    assert [e.name for e in entries] == ["c1-cached.tar.gz"]


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("missing.tar.gz", "Error downloading resource, received HTTP return code 404"),
        ("relative/path.tar.gz", "Mesos framework home was not specified"),
        ("file://relative/x.tgz", "File URI only supports absolute paths"),
        ("/nonexistent/file.tgz", "Failed to copy '/nonexistent/file.tgz'"),
        ("hdfs://namenode/x.tgz", "unsupported URI scheme 'hdfs'"),
    ],
)
def test_fetch_failure_fails_the_launch(
    cluster: EmbeddedCluster, start_framework: DriverFactory, files: Files, uri: str, reason: str
) -> None:
    value = files.url(uri) if uri == "missing.tar.gz" else uri
    driver, sched = start_framework()
    offer = sched.new_offer()
    driver.launchTasks(offer["id"], [_shipped_executor(offer, "bad", [{"value": value}])])
    failed = sched.wait_status("bad", "TASK_FAILED")
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert failed["source"] == "SOURCE_AGENT"
    assert failed["message"].startswith("Failed to launch container: Failed to fetch all URIs")
    assert f"Failed to fetch '{value}'" in failed["message"]
    assert reason in failed["message"]
    assert sched.wait("executor_lost")[2] == -1
    assert not sched.statuses("bad", "TASK_RUNNING")


def test_invalid_uris_fail_before_any_fetch(
    cluster: EmbeddedCluster, start_framework: DriverFactory, files: Files
) -> None:
    (files.root / "ok.txt").write_text("ok")
    driver, sched = start_framework()
    offer = sched.new_offer()
    uris = [
        {"value": files.url("ok.txt")},
        {"value": files.url("ok.txt"), "output_file": "/etc/escape"},
    ]
    driver.launchTasks(offer["id"], [_shipped_executor(offer, "inv", uris)])
    failed = sched.wait_status("inv", "TASK_FAILED")
    assert failed["reason"] == "REASON_CONTAINER_LAUNCH_FAILED"
    assert (
        "Could not fetch: URI output file must be within the sandbox directory"
        in (failed["message"])
    )
    assert files.gets["/ok.txt"] == 0
    quoted = [{"value": "http://host/it's.tgz"}]
    offer = sched.new_offer(after=1)
    driver.launchTasks(offer["id"], [_shipped_executor(offer, "inv2", quoted, executor_id="e2")])
    message = sched.wait_status("inv2", "TASK_FAILED")["message"]
    assert "Illegal characters in URI" in message
