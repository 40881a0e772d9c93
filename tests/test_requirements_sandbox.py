"""A model's requirements.txt installed by a real pip in the sandbox, from a package index
served on loopback by this test (no network needed).

The index holds a setuptools wheel (repacked from this interpreter's own setuptools) and
the sdist of a package whose ``setup.py`` hunts for credentials and services while pip
builds it with build isolation. It writes what it managed into the package, so the
report ends up inside the installed environment.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.metadata
import json
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ancho.errors import ModelError
from ancho.requirements import index_ports, install, pip_environment, pip_settings

SECRETS = {
    "ANCHO_STORE": "cassandra://owner:store-secret-1@127.0.0.1/ancho_owner",
    "ANCHO_TOKEN": "token-secret-2",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-3",
    "MESOS_EXECUTOR_ID": "mesos-secret-4",
}

#: What pip adds to a dist-info folder when it installs a wheel (a wheel has none of them).
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}

PROBE_SETUP = """\
import json, os, socket
from setuptools import setup

def attempt(what):
    try:
        return what()
    except OSError as exc:
        return "denied: " + type(exc).__name__

def read(path):
    with open(path, "rb") as fh:
        return fh.read().decode(errors="replace")

def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        return "connected"

def write(path):
    with open(path, "w") as fh:
        fh.write("x")
    return "written"

TARGETS = json.loads(%(targets)r)
report = {
    "environ": dict(os.environ),
    "proc_listing": attempt(lambda: os.listdir("/proc")),
    "proc_environ": attempt(lambda: read("/proc/%%d/environ" %% TARGETS["pid"])),
    "proc_self": attempt(lambda: read("/proc/self/environ")),
    "ancho_home": attempt(lambda: read(TARGETS["ancho_home"])),
    "store_file": attempt(lambda: read(TARGETS["store_file"])),
    "executor_cache": attempt(lambda: os.listdir(TARGETS["cache"])),
    "write_model_dir": attempt(lambda: write(TARGETS["model_dir"] + "/planted")),
    "write_tmp": attempt(lambda: write("/tmp/ancho-planted-%%d" %% os.getpid())),
    "other_port": attempt(lambda: connect(TARGETS["listener"])),
}
os.makedirs("probe", exist_ok=True)
open("probe/__init__.py", "w").close()
with open("probe/report.json", "w") as fh:
    json.dump(report, fh)
setup(name="probe", version="1.0", packages=["probe"], package_data={"probe": ["report.json"]})
"""


def _wheel_of_installed(name: str, folder: Path) -> Path:
    """A wheel made from this interpreter's installed ``name`` (pure-Python)."""
    dist = importlib.metadata.distribution(name)
    info = f"{dist.metadata['Name']}-{dist.version}.dist-info"
    wheel = folder / f"{dist.metadata['Name']}-{dist.version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in dist.files or []:
            parts = Path(str(file)).parts
            if ".." in parts or "__pycache__" in parts:
                continue  # scripts outside site-packages, bytecode
            if parts[0] == info and parts[-1] in _INSTALLER_FILES:
                continue
            data = Path(str(file.locate())).read_bytes()
            archive.writestr(str(file), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{file},sha256={digest.decode()},{len(data)}")
        archive.writestr(f"{info}/RECORD", "\n".join([*records, f"{info}/RECORD,,"]) + "\n")
    return wheel


def _sdist(folder: Path, setup_py: str) -> Path:
    source = folder / "probe-1.0"
    source.mkdir(parents=True)
    (source / "setup.py").write_text(setup_py)
    (source / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: probe\nVersion: 1.0\n")
    path = folder / "probe-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(source, arcname="probe-1.0")
    return path


class _Index:
    """A PEP 503 "simple" index of some files, served on a loopback port."""

    def __init__(self, root: Path, files: dict[str, Path]) -> None:
        for project, path in files.items():
            page = root / "simple" / project
            page.mkdir(parents=True)
            (root / "files").mkdir(exist_ok=True)
            (root / "files" / path.name).write_bytes(path.read_bytes())
            (page / "index.html").write_text(
                f'<html><body><a href="../../files/{path.name}">{path.name}</a></body></html>'
            )

        class Quiet(SimpleHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

        handler = functools.partial(Quiet, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def build_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("dists")
    return {"setuptools": _wheel_of_installed("setuptools", folder)}


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """Another process of the machine, whose environment holds the secrets."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                            env={**SECRETS, "PATH": "/usr/bin:/bin"})  # fmt: skip
    yield proc
    proc.kill()
    proc.wait()


def test_hostile_build_code_finds_no_credentials_and_no_services(
    build_files: dict[str, Path],
    victim: subprocess.Popen[bytes],
    listener: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = tmp_path / "home"
    (home / ".ancho").mkdir(parents=True)
    (home / ".ancho" / "config.json").write_text('{"token": "home-secret-5"}')
    store_file = tmp_path / "store" / "ancho.db"
    store_file.parent.mkdir()
    store_file.write_text("store-file-secret-6")
    model = tmp_path / "model"
    model.mkdir()
    cache = tmp_path / "cache"
    targets = {"pid": victim.pid, "ancho_home": str(home / ".ancho" / "config.json"),
               "store_file": str(store_file), "cache": str(cache), "model_dir": str(model),
               "listener": listener}  # fmt: skip
    sdist = _sdist(tmp_path / "sdist", PROBE_SETUP % {"targets": json.dumps(targets)})
    index = _Index(tmp_path / "index", {**build_files, "probe": sdist})
    try:
        (model / "requirements.txt").write_text("probe==1.0\n")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("PIP_INDEX_URL", index.url)
        monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
        for key, value in SECRETS.items():
            monkeypatch.setenv(key, value)
        env = install(model / "requirements.txt", cache)
    finally:
        index.close()

    # Built by setuptools with build isolation, inside the sandbox, and installed.
    text = (env / "probe" / "report.json").read_text()
    report = json.loads(text)
    leaked = [k for k in report["environ"] if k.startswith(("ANCHO_", "AWS_", "MESOS_"))]
    assert leaked == [] and report["environ"]["HOME"].startswith(str(cache))
    for key in ("proc_listing", "proc_environ", "proc_self", "ancho_home", "store_file",
                "executor_cache", "write_model_dir", "write_tmp", "other_port"):  # fmt: skip
        assert report[key] == "denied: PermissionError", (key, report[key])
    assert not (model / "planted").exists()
    for secret in [*SECRETS.values(), "home-secret-5", "store-file-secret-6"]:
        assert secret not in text
    # Its work folder (home, temporary files, private pip cache) is gone; the env stays.
    assert sorted(p.name for p in (cache / "envs").iterdir()) == [env.name, f"{env.name}.lock"]


def test_a_failing_build_fails_with_pips_message(
    build_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdist = _sdist(tmp_path / "sdist", "raise SystemExit('this build refuses: no compiler')\n")
    index = _Index(tmp_path / "index", {**build_files, "probe": sdist})
    model = tmp_path / "model"
    model.mkdir()
    (model / "requirements.txt").write_text("probe==1.0\n")
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    try:
        with pytest.raises(ModelError, match=r"installing requirements\.txt failed") as failed:
            install(model / "requirements.txt", tmp_path / "cache")
    finally:
        index.close()
    assert "probe" in str(failed.value)
    assert [p.name for p in (tmp_path / "cache" / "envs").iterdir() if p.is_dir()] == []


def test_the_index_port_is_the_only_one(tmp_path: Path) -> None:
    (tmp_path / "pip.conf").write_text(
        "[global]\nindex-url = https://mirror.example:8443/simple\n"
        "[install]\nextra-index-url = http://extra.example/simple\n"
    )
    environ = {"PIP_CONFIG_FILE": str(tmp_path / "pip.conf"), "HOME": str(tmp_path)}
    assert index_ports(pip_settings(environ), environ) == [80, 8443]
    assert index_ports(pip_settings({"HOME": str(tmp_path)}), {}) == [443]
    proxied = {"HTTPS_PROXY": "http://proxy.example:3128", "HOME": str(tmp_path)}
    assert index_ports(pip_settings(proxied), proxied) == [3128]
    bypassed = {**proxied, "PIP_INDEX_URL": "https://pypi.internal/simple",
                "NO_PROXY": "pypi.internal"}  # fmt: skip
    assert index_ports(pip_settings(bypassed), bypassed) == [443]
    offline = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": "/opt/wheels", "HOME": str(tmp_path)}
    assert index_ports(pip_settings(offline), offline) == []


def test_pip_gets_no_credentials_in_its_environment(tmp_path: Path) -> None:
    environ = {**SECRETS, "PATH": "/usr/bin", "PIP_INDEX_URL": "https://i.example/simple",
               "PIP_TARGET": "/elsewhere", "HTTPS_PROXY": "http://p:1", "HOME": "/root",
               "PYTHONPATH": "/somewhere", "ANCHO_CACHE_DIR": "/cache"}  # fmt: skip
    env = pip_environment(environ, home=tmp_path / "h", tmp=tmp_path / "t", cache=tmp_path / "c")
    assert env == {"PATH": "/usr/bin", "PIP_INDEX_URL": "https://i.example/simple",
                   "HTTPS_PROXY": "http://p:1", "HOME": str(tmp_path / "h"),
                   "TMPDIR": str(tmp_path / "t"), "PIP_CACHE_DIR": str(tmp_path / "c"),
                   "PYTHONNOUSERSITE": "1"}  # fmt: skip


def test_a_listener_on_loopback_is_reachable_outside(listener: int) -> None:
    # The control for "other_port" above: the port is open to anyone not confined.
    with socket.create_connection(("127.0.0.1", listener), timeout=3):
        pass
