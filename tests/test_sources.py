"""Model sources against real servers on loopback, no mocks: HTTPS (a CA and certificate
made with the openssl CLI), git smart HTTP (``git http-backend`` behind a small HTTPS
server) and ``git+file://``, S3 (moto's server), ``sha256:`` models in SQLite and
Cassandra, spec checks, and ``ancho run`` end to end (marked slow)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import sqlite3
import ssl
import subprocess
import tarfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from e2e import EXAMPLES, ancho, run_id_of, write_spec

from ancho.cluster.ports import free_port
from ancho.errors import ModelError, NotFound, SpecError
from ancho.sources import fetch
from ancho.spec import spec_from_data
from ancho.store import Store, open_store
from ancho.store.sqlite import SQLiteStore

SECRET = "hunter2-do-not-print"


# --- helpers -----------------------------------------------------------------------------
def tarball(files: dict[str, bytes | str], top: str | None = None) -> bytes:
    """A gzip tarball of ``files`` (under ``top/`` when given)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in files.items():
            raw = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{top}/{name}" if top else name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return out.getvalue()


def pi_tarball() -> bytes:
    """examples/pi as a tarball of ``pi/``."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        tar.add(EXAMPLES / "pi" / "model.py", arcname="pi/model.py")
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_sentence(exc: pytest.ExceptionInfo[ModelError], source: str) -> str:
    """The error's message, checked to name the source and carry no traceback or secret."""
    message = exc.value.format_message()
    assert source in message and "Traceback" not in message and "\n" not in message
    assert SECRET not in message
    return message


@dataclass
class Tls:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""

    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        proc = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=Ancho test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2",
            "-extfile", "ext.cnf")  # fmt: skip
    return Tls(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@pytest.fixture
def trust(tls: Tls, monkeypatch: pytest.MonkeyPatch) -> Tls:
    """Trust the test CA through ANCHO_CA_BUNDLE, as an operator would."""
    monkeypatch.setenv("ANCHO_CA_BUNDLE", str(tls.ca))
    return tls


class Server:
    """A threaded HTTP(S) server on a free loopback port."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], tls: Tls | None) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            context = tls.server_context()
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@dataclass
class Files:
    """What a tarball server serves, and what it was asked."""

    content: dict[str, bytes] = field(default_factory=dict)
    log: list[tuple[str, int]] = field(default_factory=list)
    auth: list[str] = field(default_factory=list)
    server: Server | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return self.server.base + path

    def statuses(self) -> list[int]:
        return [status for _, status in self.log]


def files_handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            files.auth.append(self.headers.get("Authorization", ""))
            body = files.content.get(self.path)
            if body is None:
                return self._reply(404, b"not found")
            etag = f'"{sha(body)[:16]}"'
            if self.headers.get("If-None-Match") == etag:
                return self._reply(304, b"", etag)
            self._reply(200, body, etag)

        def _reply(self, status: int, body: bytes, etag: str | None = None) -> None:
            files.log.append((self.path, status))
            self.send_response(status)
            if etag:
                self.send_header("ETag", etag)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def serve_files(tls: Tls | None) -> Iterator[Files]:
    files = Files()
    files.server = Server(files_handler(files), tls)
    yield files
    files.server.close()


@pytest.fixture
def https(tls: Tls) -> Iterator[Files]:
    yield from serve_files(tls)


@pytest.fixture
def http() -> Iterator[Files]:
    yield from serve_files(None)


# --- local tarballs with a pin ----------------------------------------------------------------
def test_file_url_pin_is_checked(tmp_path: Path) -> None:
    data = tarball({"model.py": "X = 1\n"})
    archive = tmp_path / "m.tar.gz"
    archive.write_bytes(data)
    folder = fetch(f"file://{archive}#sha256={sha(data)}", tmp_path / "cache")
    assert folder == tmp_path / "cache" / sha(data)
    wrong = "0" * 64
    with pytest.raises(ModelError) as info:
        fetch(f"file://{archive}#sha256={wrong}", tmp_path / "cache")
    assert sha(data) in str(info.value) and wrong in str(info.value)


# --- https ---------------------------------------------------------------------------------
def test_https_tarball_is_fetched_once_then_revalidated(
    https: Files, trust: Tls, tmp_path: Path
) -> None:
    data = tarball({"model.py": "VERSION = 1\n"}, top="m")
    https.content["/m.tar.gz"] = data
    cache = tmp_path / "cache"
    first = fetch(https.url("/m.tar.gz"), cache)
    assert first == cache / sha(data) / "m"
    assert (first / "model.py").read_text() == "VERSION = 1\n"
    second = fetch(https.url("/m.tar.gz"), cache)
    assert second == first
    assert https.statuses() == [200, 304]  # the second fetch downloaded nothing
    # New content behind the same URL: downloaded and unpacked beside the old one.
    https.content["/m.tar.gz"] = tarball({"model.py": "VERSION = 2\n"}, top="m")
    third = fetch(https.url("/m.tar.gz"), cache)
    assert third != first and (third / "model.py").read_text() == "VERSION = 2\n"
    assert https.statuses() == [200, 304, 200]
    assert not [p for p in cache.iterdir() if p.name.startswith((".download", ".unpack"))]


def test_https_pin_second_fetch_uses_no_network(https: Files, trust: Tls, tmp_path: Path) -> None:
    data = tarball({"model.py": "X = 1\n"})
    https.content["/p.tgz"] = data
    source = https.url(f"/p.tgz#sha256={sha(data)}")
    folder = fetch(source, tmp_path)
    assert folder == tmp_path / sha(data)
    https.server.close()  # type: ignore[union-attr]
    assert fetch(source, tmp_path) == folder
    assert https.statuses() == [200]


def test_https_pin_mismatch_names_both_digests(https: Files, trust: Tls, tmp_path: Path) -> None:
    data = tarball({"model.py": "X = 1\n"})
    https.content["/p.tgz"] = data
    pin = "ab" * 32
    source = https.url(f"/p.tgz#sha256={pin}")
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    message = one_sentence(info, source)
    assert f"sha256 is {sha(data)}" in message and f"pins {pin}" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks"]  # nothing cached


def test_concurrent_fetches_download_once(https: Files, trust: Tls, tmp_path: Path) -> None:
    data = tarball({"model.py": "X = 1\n"}, top="m")
    https.content["/c.tgz"] = data
    results: list[Path | BaseException] = []

    def worker(source: str) -> None:
        try:
            results.append(fetch(source, tmp_path))
        except BaseException as exc:
            results.append(exc)

    for source in (https.url(f"/c.tgz#sha256={sha(data)}"), https.url("/c.tgz")):
        threads = [threading.Thread(target=worker, args=(source,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [tmp_path / sha(data) / "m"] * 8
    # Pinned: one download for four fetches. Unpinned: the first has no validators yet and
    # downloads (its digest is cached already: not unpacked again); the others wait for it,
    # then revalidate and get a bodiless 304.
    assert https.statuses() == [200, 200, 304, 304, 304]


@pytest.mark.parametrize(
    ("path", "content", "expected"),
    [("/missing.tgz", None, "the server answered 404 Not Found"),
     ("/plain.tgz", b"just text, not gzip", "cannot unpack: not a gzip tarball")],
)  # fmt: skip
def test_https_failures_are_one_clear_sentence(
    https: Files, trust: Tls, tmp_path: Path, path: str, content: bytes | None, expected: str
) -> None:
    if content is not None:
        https.content[path] = content
    source = https.url(path)
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    assert expected in one_sentence(info, source)


def test_unreachable_host_is_a_clear_error(trust: Tls, tmp_path: Path) -> None:
    source = f"https://127.0.0.1:{free_port()}/m.tar.gz"
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    assert "connection refused" in one_sentence(info, source)


def test_untrusted_certificate_says_how_to_trust_it(
    https: Files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANCHO_CA_BUNDLE", raising=False)
    https.content["/m.tgz"] = tarball({"model.py": ""})
    source = https.url("/m.tgz")
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    message = one_sentence(info, source)
    assert "not trusted" in message and "ANCHO_CA_BUNDLE" in message


def test_http_is_allowed_and_passwords_are_never_printed(http: Files, tmp_path: Path) -> None:
    http.content["/m.tgz"] = tarball({"model.py": "X = 1\n"})
    base = http.url("").replace("http://", f"http://alice:{SECRET}@")
    assert (fetch(f"{base}/m.tgz", tmp_path) / "model.py").is_file()
    assert http.auth[-1].startswith("Basic ")  # the credentials went as basic auth
    with pytest.raises(ModelError) as info:
        fetch(f"{base}/nope.tgz?X-Amz-Signature=abc", tmp_path)
    message = one_sentence(info, "alice:***@")
    assert "X-Amz-Signature" not in message and "404" in message


# --- git -----------------------------------------------------------------------------------
@dataclass
class GitRepo:
    """A bare repository with a tagged commit, main, and a feature branch."""

    root: Path  # GIT_PROJECT_ROOT
    commits: dict[str, str]  # label -> commit


def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}  # fmt: skip
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> GitRepo:
    base = tmp_path_factory.mktemp("git")
    work = base / "work"
    work.mkdir()
    _git("init", "-q", "-b", "main", cwd=work)
    commits = {}
    for label in ("v1", "v2"):
        (work / "model.py").write_text(f"VERSION = {label!r}\n")
        _git("add", "model.py", cwd=work)
        _git("commit", "-q", "-m", label, cwd=work)
        commits[label] = _git("rev-parse", "HEAD", cwd=work)
        if label == "v1":
            _git("tag", "-a", "v1", "-m", "release 1", cwd=work)
    _git("checkout", "-q", "-b", "feature", commits["v1"], cwd=work)
    (work / "model.py").write_text("VERSION = 'feature'\n")
    _git("commit", "-q", "-am", "feature", cwd=work)
    commits["feature"] = _git("rev-parse", "HEAD", cwd=work)
    _git("checkout", "-q", "main", cwd=work)
    root = base / "srv"
    root.mkdir()
    _git("clone", "-q", "--bare", str(work), str(root / "models.git"), cwd=base)
    return GitRepo(root, commits)


def git_handler(root: Path, log: list[str]) -> type[BaseHTTPRequestHandler]:
    """Git's smart HTTP protocol: each request handed to ``git http-backend`` (CGI)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._cgi()

        def do_POST(self) -> None:
            self._cgi()

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            log.append(f"{self.command} {path}")
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = b""
                while size := int(self.rfile.readline().strip() or b"0", 16):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(root),
                   "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command,
                   "PATH_INFO": unquote(path), "QUERY_STRING": query,
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
                   "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_PROTOCOL": "HTTP/1.1"}  # fmt: skip
            for name, value in self.headers.items():
                env["HTTP_" + name.upper().replace("-", "_")] = value
            proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                                  capture_output=True, timeout=60)  # fmt: skip
            head, *rest = re.split(rb"\r?\n\r?\n", proc.stdout, maxsplit=1)
            payload = rest[0] if rest else b""
            headers = [line.split(":", 1) for line in head.decode().splitlines() if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            self.send_response(status)
            for name, value in headers:
                if name.lower() != "status":
                    self.send_header(name, value.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@dataclass
class GitServer:
    base: str
    log: list[str]


@pytest.fixture
def git_https(git_repo: GitRepo, trust: Tls) -> Iterator[GitServer]:
    log: list[str] = []
    server = Server(git_handler(git_repo.root, log), trust)
    yield GitServer(f"git+{server.base}/models.git", log)
    server.close()


def version(folder: Path) -> str:
    return (folder / "model.py").read_text().strip()


def test_git_branch_tag_commit_and_default_head(
    git_https: GitServer, git_repo: GitRepo, tmp_path: Path
) -> None:
    c = git_repo.commits
    cases = [("", "v2", c["v2"]), ("@main", "v2", c["v2"]), ("@v1", "v1", c["v1"]),
             ("@feature", "feature", c["feature"]), (f"@{c['v1']}", "v1", c["v1"])]  # fmt: skip
    for suffix, label, commit in cases:
        folder = fetch(git_https.base + suffix, tmp_path)
        assert folder == tmp_path / f"git-{commit}", suffix
        assert version(folder) == f"VERSION = {label!r}"
        assert not (folder / ".git").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("git-")) == sorted(
        f"git-{commit}" for commit in c.values()
    )


def test_git_commit_once_cached_needs_no_network(
    git_https: GitServer, git_repo: GitRepo, tmp_path: Path
) -> None:
    source = f"{git_https.base}@{git_repo.commits['feature']}"
    folder = fetch(source, tmp_path)
    asked = len(git_https.log)
    assert asked > 0
    (folder / "marker").write_text("kept")
    assert fetch(source, tmp_path) == folder and (folder / "marker").is_file()
    assert len(git_https.log) == asked
    # A branch is resolved again (ls-remote), but the tree is not fetched again.
    fetch(f"{git_https.base}@feature", tmp_path)
    cached = len(git_https.log) - asked
    fetch(f"{git_https.base}@feature", tmp_path / "fresh")
    assert 0 < cached < len(git_https.log) - asked - cached
    assert (folder / "marker").is_file()


def test_git_missing_ref_commit_and_repository(git_https: GitServer, tmp_path: Path) -> None:
    for source, expected in [
        (f"{git_https.base}@nope", "no branch or tag 'nope' in the repository"),
        (f"{git_https.base}@{'0' * 40}", f"commit {'0' * 40} is not in the repository"),
        (git_https.base.replace("models.git", "other.git"), "git ls-remote failed"),
    ]:
        with pytest.raises(ModelError) as info:
            fetch(source, tmp_path)
        assert expected in one_sentence(info, source)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("git-", ".git-"))]


def test_git_file_url(git_repo: GitRepo, tmp_path: Path) -> None:
    repo = git_repo.root / "models.git"
    assert version(fetch(f"git+file://{repo}@v1", tmp_path)) == "VERSION = 'v1'"
    assert version(fetch(f"git+file://{repo}", tmp_path)) == "VERSION = 'v2'"


def test_git_unreachable_and_credentials_are_not_printed(trust: Tls, tmp_path: Path) -> None:
    source = f"git+https://bob:{SECRET}@127.0.0.1:{free_port()}/models.git@main"
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    message = one_sentence(info, "git+https://bob:***@127.0.0.1")
    assert "git ls-remote failed" in message


# --- s3 ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    server_module = pytest.importorskip(
        "moto.server", reason="moto[server] is not installed: pip install 'moto[server]'"
    )
    port = free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Dummy credentials and moto's endpoint in the standard AWS variables; a client."""
    boto3 = pytest.importorskip("boto3", reason="boto3 is not installed")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    return boto3.client("s3")


def bucket(s3: Any) -> str:
    name = f"models-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_s3_object_is_fetched_once_per_etag(
    s3: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    b = bucket(s3)
    data = tarball({"model.py": "VERSION = 1\n"}, top="pi")
    s3.put_object(Bucket=b, Key="models/pi.tar.gz", Body=data)
    source = f"s3://{b}/models/pi.tar.gz"
    first = fetch(source, tmp_path)
    assert first == tmp_path / sha(data) / "pi" and version(first) == "VERSION = 1"
    caplog.set_level(logging.INFO, logger="ancho.sources")
    caplog.clear()
    assert fetch(source, tmp_path) == first
    assert "unchanged (ETag)" in caplog.text and "downloaded" not in caplog.text
    newer = tarball({"model.py": "VERSION = 2\n"}, top="pi")
    s3.put_object(Bucket=b, Key="models/pi.tar.gz", Body=newer)
    caplog.clear()
    assert version(fetch(source, tmp_path)) == "VERSION = 2"
    assert "downloaded" in caplog.text


def test_s3_pin_once_cached_needs_no_network(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = bucket(s3)
    data = tarball({"model.py": "X = 1\n"})
    s3.put_object(Bucket=b, Key="m.tgz", Body=data)
    folder = fetch(f"s3://{b}/m.tgz#sha256={sha(data)}", tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_port()}")
    assert fetch(f"s3://{b}/m.tgz#sha256={sha(data)}", tmp_path) == folder
    with pytest.raises(ModelError) as info:  # the same object unpinned asks S3 first
        fetch(f"s3://{b}/m.tgz", tmp_path)
    assert "cannot reach the S3 endpoint" in one_sentence(info, f"s3://{b}/m.tgz")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.meta.endpoint_url)
    wrong = "cd" * 32
    with pytest.raises(ModelError) as info:
        fetch(f"s3://{b}/m.tgz#sha256={wrong}", tmp_path)
    assert f"pins {wrong}" in one_sentence(info, f"s3://{b}/m.tgz")


def test_s3_failures_are_one_clear_sentence(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = bucket(s3)
    cases = [(f"s3://{b}/missing.tgz", "no object 'missing.tgz'"),
             (f"s3://no-such-{b}/m.tgz", "m.tgz")]  # fmt: skip
    for source, expected in cases:
        with pytest.raises(ModelError) as info:
            fetch(source, tmp_path)
        assert expected in one_sentence(info, source)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ModelError) as info:
        fetch(f"s3://{b}/m.tgz", tmp_path)
    assert "no AWS credentials" in one_sentence(info, f"s3://{b}/m.tgz")


# --- sha256: models in the store ----------------------------------------------------------------
@pytest.fixture(params=["sqlite", "cassandra"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'ancho.db'}"
    if request.param == "cassandra":
        url = request.getfixturevalue("cassandra_url")
    s = open_store(url)
    yield s
    s.close()


def test_store_keeps_models_by_digest(store: Store, tmp_path: Path) -> None:
    # Incompressible and over 2 MiB: three rows of a Cassandra partition.
    data = tarball({"model.py": "X = 1\n", "weights.bin": os.urandom(5 << 19)}, top="m")
    assert len(data) > 2 << 20
    digest = sha(data)
    store.put_model(digest, data)
    store.put_model(digest, data)  # again: a no-op
    assert store.get_model(digest) == data
    folder = fetch(f"sha256:{digest}", tmp_path / "cache", store)
    assert folder == tmp_path / "cache" / digest / "m"
    assert (folder / "weights.bin").stat().st_size == 5 << 19
    # The second fetch on this cache reads nothing from the store: none is given.
    assert fetch(f"sha256:{digest.upper()}", tmp_path / "cache") == folder


def test_store_refuses_data_that_does_not_match_its_digest(store: Store) -> None:
    data = tarball({"model.py": ""})
    with pytest.raises(ModelError, match="data's sha256 is"):
        store.put_model("0" * 64, data)
    with pytest.raises(ModelError, match="64 lowercase hex"):
        store.put_model("nothex", data)
    with pytest.raises(NotFound):
        store.get_model("0" * 64)


def test_unknown_digest_and_no_store_are_clear_errors(store: Store, tmp_path: Path) -> None:
    source = f"sha256:{'e' * 64}"
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path, store)
    assert "no model with this digest in the store" in one_sentence(info, source)
    with pytest.raises(ModelError) as info:
        fetch(source, tmp_path)
    assert "none was given" in one_sentence(info, source)


def test_fetch_verifies_the_stored_digest_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ancho.db")
    good, bad = tarball({"model.py": "X = 1\n"}), tarball({"model.py": "X = 2\n"})
    store.put_model(sha(good), good)
    with sqlite3.connect(tmp_path / "ancho.db") as db:  # corrupt it behind the store's back
        db.execute("UPDATE models SET data = ? WHERE digest = ?", (bad, sha(good)))
    with pytest.raises(ModelError) as info:
        fetch(f"sha256:{sha(good)}", tmp_path / "cache", store)
    assert f"whose sha256 is {sha(bad)}, not {sha(good)}" in one_sentence(info, sha(good))
    assert not (tmp_path / "cache" / sha(good)).exists()


@pytest.mark.slow
def test_cassandra_keyspaces_gain_the_models_table(cassandra_url: str) -> None:
    """An upgraded admin keyspace creates ``models`` in its users' keyspaces too, and a
    user's role can then keep and read models there."""
    from ancho.store.cassandra import SCHEMA_VERSION, CassandraStore, CassandraURL
    from ancho.users import add_user

    admin = open_store(cassandra_url)
    assert isinstance(admin, CassandraStore)
    name = f"m_{uuid.uuid4().hex[:8]}"
    user = add_user(admin, name)
    user_ks = CassandraURL.parse(user["store"]).keyspace
    admin_ks = admin.config.keyspace
    try:
        for ks in (admin_ks, user_ks):  # as a version-1 keyspace looked
            admin.session.execute(f"DROP TABLE {ks}.models")
            admin.session.execute(f"UPDATE {ks}.meta SET value = '1' WHERE key = 'schema_version'")
        admin.close()
        admin = open_store(cassandra_url)  # the upgrade
        assert isinstance(admin, CassandraStore)
        for ks in (admin_ks, user_ks):
            version = admin.session.execute(
                f"SELECT value FROM {ks}.meta WHERE key = 'schema_version'"
            ).one()
            assert version.value == str(SCHEMA_VERSION)
        own = open_store(user["store"])
        data = tarball({"model.py": "X = 1\n"})
        own.put_model(sha(data), data)
        assert own.get_model(sha(data)) == data
        own.close()
    finally:
        admin.session.execute(f"DROP KEYSPACE IF EXISTS {user_ks}")
        admin.session.execute(f"DROP ROLE IF EXISTS {name}")
        admin.close()


# --- spec validation ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "message"),
    [("s3://bucket", "must look like s3://bucket/key"),
     ("sha256:xyz", "sha256: must be followed by exactly 64 hex digits"),
     ("git+ssh://host/repo", "git sources look like git+https://host/repo[@ref]"),
     ("https://host/m.tgz#md5=abc", "only #sha256=<64 hex digits> is"),
     ("ftp://host/m.tgz", "unsupported scheme ftp://")],
)  # fmt: skip
def test_spec_checks_the_source_syntax(source: str, message: str) -> None:
    spec = {"model": {"source": source, "entrypoint": "model:simulate"}, "sequences": 1}
    with pytest.raises(SpecError) as info:
        spec_from_data(spec)
    ((path, text),) = [(d.path, d.message) for d in info.value.details]
    assert path == "/model/source" and message in text


@pytest.mark.parametrize(
    "source",
    [
        "s3://bucket/key.tar.gz",
        f"sha256:{'a' * 64}",
        "git+https://h/r.git@v1.2",
        f"https://h/m.tgz#sha256={'b' * 64}",
        "git+file:///srv/r.git",
        "http://localhost:8/m",
    ],
)
def test_spec_accepts_every_source_kind(source: str) -> None:
    spec = {"model": {"source": source, "entrypoint": "model:simulate"}, "sequences": 1}
    assert spec_from_data(spec).model.source == source


# --- ancho run end to end ------------------------------------------------------------------------
RUN = {"entrypoint": "model:simulate"}
E2E = {"parameters": {"samples": 200}, "sequences": 300, "seed": 7}


@pytest.fixture(scope="module")
def local_results(tmp_path_factory: pytest.TempPathFactory) -> str:
    """``ancho results`` of the pi example run from its folder."""
    folder = tmp_path_factory.mktemp("local")
    spec = {"model": {"source": str(EXAMPLES / "pi"), **RUN}, **E2E}
    run = ancho("run", str(write_spec(folder, spec)), "--json", cwd=folder)
    assert run.code == 0, run.stderr
    out = ancho("results", run_id_of(run), cwd=folder).stdout
    assert len(out.splitlines()) == 300
    return out


def run_source(folder: Path, source: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the pi spec with ``source``; (exit code, run id)."""
    spec = {"model": {"source": source, **RUN}, **E2E}
    run = ancho("run", str(write_spec(folder, spec)), "--json", cwd=folder, env=env)
    assert "Traceback" not in run.stderr
    return run.code, run_id_of(run)


@pytest.mark.slow
def test_run_from_https_tarball_matches_the_local_run(
    local_results: str, https: Files, tls: Tls, tmp_path: Path
) -> None:
    https.content["/pi.tar.gz"] = pi_tarball()
    env = {"ANCHO_CA_BUNDLE": str(tls.ca)}
    code, run_id = run_source(tmp_path, https.url("/pi.tar.gz"), env)
    assert code == 0
    assert ancho("results", run_id, cwd=tmp_path).stdout == local_results


@pytest.mark.slow
def test_run_from_sha256_in_the_store_matches_the_local_run(
    local_results: str, tmp_path: Path
) -> None:
    data = pi_tarball()
    store = SQLiteStore(tmp_path / ".ancho" / "ancho.db")  # the default store of `ancho run`
    store.put_model(sha(data), data)
    store.close()
    code, run_id = run_source(tmp_path, f"sha256:{sha(data)}")
    status = ancho("status", run_id, cwd=tmp_path).json()
    assert code == 0, status["reason"]
    assert ancho("results", run_id, cwd=tmp_path).stdout == local_results


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["unreachable", "mismatch"])
def test_run_whose_source_fails_ends_failed_with_the_reason(
    problem: str, https: Files, tls: Tls, tmp_path: Path
) -> None:
    https.content["/pi.tar.gz"] = pi_tarball()
    if problem == "unreachable":
        source, reason = f"https://127.0.0.1:{free_port()}/pi.tar.gz", "connection refused"
    else:
        source, reason = https.url(f"/pi.tar.gz#sha256={'f' * 64}"), f"pins {'f' * 64}"
    env = {"ANCHO_CA_BUNDLE": str(tls.ca), "ANCHO_SPARK_WARMUP": "0"}
    code, run_id = run_source(tmp_path, source, env)
    assert code == 1
    status = ancho("status", run_id, cwd=tmp_path).json()
    assert status["state"] == "FAILED"
    assert reason in status["reason"] and source.split("#")[0] in status["reason"]


def test_safe_extract_without_tarfile_filters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor image's Python 3.11.2 has no extraction filters: the fallback holds."""
    import io
    import tarfile

    from ancho.client import pack
    from ancho.sources import safe_extract

    monkeypatch.delattr(tarfile, "data_filter")
    with tarfile.open(fileobj=io.BytesIO(pack(EXAMPLES / "pi")), mode="r:gz") as tar:
        safe_extract(tar, tmp_path / "ok")
    assert (tmp_path / "ok" / "model" / "model.py").read_bytes() == (
        EXAMPLES / "pi" / "model.py"
    ).read_bytes()
    for name, kind in (("../evil", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tar.addfile(info, io.BytesIO(b""))
        buf.seek(0)
        with tarfile.open(fileobj=buf, mode="r:gz") as tar, pytest.raises(tarfile.TarError):
            safe_extract(tar, tmp_path / "bad")
