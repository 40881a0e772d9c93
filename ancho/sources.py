"""Model sources: the spec's ``model.source``, fetched once per agent and cached by digest.

Kinds (see :func:`fetch`):

* a local directory, used in place; a local ``.tar.gz``/``.tgz`` (a path or ``file://``);
* ``https://….tar.gz`` (``http://`` too, meant for development), downloaded with urllib;
* ``git+https://host/repo[@ref]`` (also ``git+http://`` and ``git+file://``);
* ``s3://bucket/key``, read with boto3 and the standard AWS environment and config;
* ``sha256:<64 hex>``, a tarball uploaded to the server and kept in the result store.

``file://``, ``http(s)://`` and ``s3://`` URLs may carry a pip-style pin,
``#sha256=<64 hex>``: the tarball must have that digest, and once it is cached a
fetch touches no network at all.

The cache (``cache_dir``) is shared by every executor of an agent:

* ``<sha256 of the tarball>/`` holds an unpacked tarball, whatever its kind (a local
  file, a download, an S3 object or a stored model), so one content is unpacked once;
* ``git-<commit>/`` holds the tree of a git commit (no ``.git`` folder);
* ``.sources.json`` remembers, per unpinned URL or S3 object, the ETag/Last-Modified and
  the digest it had, so a second fetch of unchanged content downloads nothing;
* ``.locks/`` holds one ``fcntl`` lock file per entry; entries are built beside their
  final place and renamed into it, so they appear only complete.

Every failure is a :class:`~ancho.errors.ModelError` with one sentence naming the
source, with passwords and query strings (which may carry signatures) left out.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import gzip
import hashlib
import http.client
import io
import json
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from .errors import AnchoError, ModelError, NotFound

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("ancho.sources")

#: Seconds a network read or connect may take before an HTTP(S) download fails.
HTTP_TIMEOUT_S = 60.0
#: Seconds one git command (ls-remote, fetch, checkout) may take.
GIT_TIMEOUT_S = 300.0
#: Environment variable naming an extra CA bundle (PEM) trusted for model sources.
CA_BUNDLE_ENV = "ANCHO_CA_BUNDLE"

_HEX64 = re.compile(r"[0-9a-fA-F]{64}\Z")
_COMMIT = re.compile(r"[0-9a-f]{40}\Z")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]\Z")
_TARBALL = (".tar.gz", ".tgz")
_BLOCK = 1 << 20
_INDEX = ".sources.json"

Kind = Literal["local", "http", "git", "s3", "sha256"]


class _BadSource(ValueError):
    """``model.source`` does not parse (the message says how it should look)."""


@dataclass(slots=True, frozen=True)
class Source:
    """A parsed ``model.source``.

    ``location`` is a local path (``local``), a URL without its fragment (``http``), the
    repository URL without ``git+`` and ``@ref`` (``git``), ``bucket/key`` (``s3``) or the
    digest (``sha256``). ``display`` is safe to print: no password, no query string.
    """

    kind: Kind
    location: str
    display: str
    pin: str | None = None
    ref: str | None = None


# --- parsing -------------------------------------------------------------------------
def parse(source: str) -> Source:
    """Parse ``source`` or raise :class:`~ancho.errors.ModelError` saying what is wrong."""
    try:
        return _parse(source)
    except _BadSource as exc:
        raise ModelError(f"model.source {display(source)!r}: {exc}") from None


def check(source: str) -> str | None:
    """What is wrong with the syntax of ``source``, or None (no file or network access)."""
    try:
        _parse(source)
    except _BadSource as exc:
        return str(exc)
    return None


def display(source: str) -> str:
    """``source`` with any password replaced by ``***`` and any query string by ``?…``."""
    prefix = "git+" if source.startswith("git+") else ""
    rest = source.removeprefix(prefix)
    if "://" not in rest:
        return source
    parts = urlsplit(rest)
    netloc = parts.netloc
    if "@" in netloc:  # a user alone may be a token (https://TOKEN@host/…): hide it too
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"***@{hostport}"
    query = "…" if parts.query else ""
    return prefix + urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _parse(source: str) -> Source:
    shown = display(source)
    if source.startswith("sha256:"):
        digest = source.removeprefix("sha256:")
        if not _HEX64.match(digest):
            raise _BadSource("sha256: must be followed by exactly 64 hex digits")
        return Source("sha256", digest.lower(), shown)
    if source.startswith("git+"):
        return _parse_git(source, shown)
    if source.startswith("file://"):
        path, _, fragment = source.removeprefix("file://").partition("#")
        if not path:
            raise _BadSource("a file:// URL needs a path (file:///path/to/model.tar.gz)")
        return Source("local", unquote(path), shown, _pin(fragment))
    scheme, sep, _ = source.partition("://")
    if not sep:
        return Source("local", source, shown)
    parts = urlsplit(source)
    if scheme in ("https", "http"):
        if not parts.hostname:
            raise _BadSource(f"a {scheme}:// URL needs a host ({scheme}://host/model.tar.gz)")
        _port(parts)
        location = urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, ""))
        return Source("http", location, shown, _pin(parts.fragment))
    if scheme == "s3":
        bucket, key = parts.netloc, parts.path.lstrip("/")
        if not bucket or not key or parts.query:
            raise _BadSource("must look like s3://bucket/key")
        if not _BUCKET.match(bucket):
            raise _BadSource(f"{bucket!r} is not a valid S3 bucket name")
        return Source("s3", f"{bucket}/{key}", shown, _pin(parts.fragment))
    raise _BadSource(
        f"unsupported scheme {scheme}://; use a local path, file://, https://, git+https://,"
        " s3:// or sha256:"
    )


def _parse_git(source: str, shown: str) -> Source:
    parts = urlsplit(source.removeprefix("git+"))
    if parts.scheme not in ("https", "http", "file"):
        raise _BadSource("git sources look like git+https://host/repo[@ref] (or git+file://)")
    if parts.scheme != "file" and not parts.hostname:
        raise _BadSource(f"git+{parts.scheme}:// needs a host (git+https://host/repo[@ref])")
    if parts.fragment or parts.query:
        raise _BadSource("git sources take no ?query or #fragment; name a ref with @ref")
    _port(parts)
    path, ref = parts.path, None
    if "@" in path:
        path, _, ref = path.rpartition("@")
        if not ref:
            raise _BadSource("an empty @ref; name a branch, a tag or a 40-hex commit")
    if path.strip("/") == "":
        raise _BadSource("a git source needs a repository path (git+https://host/repo)")
    location = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return Source("git", location, shown, None, ref)


def _port(parts: SplitResult) -> None:
    try:
        parts.port  # noqa: B018 - validates the port
    except ValueError:
        raise _BadSource("the port is not a number from 0 to 65535") from None


def _pin(fragment: str) -> str | None:
    if not fragment:
        return None
    name, sep, value = fragment.partition("=")
    if name != "sha256" or not sep or not _HEX64.match(value):
        raise _BadSource(
            f"the fragment #{fragment} is not understood (only #sha256=<64 hex digits> is)"
        )
    return value.lower()


# --- fetching ------------------------------------------------------------------------
def fetch(source: str, cache_dir: Path, store: Store | None = None) -> Path:
    """The local directory holding the model ``source`` names, fetching it if needed.

    ``store`` is needed only for ``sha256:`` sources (the store holds those models).
    """
    src = parse(source)
    cache = _Cache(cache_dir, src.display)
    try:
        if src.kind == "local":
            return _fetch_local(src, cache)
        if src.kind == "http":
            return _fetch_http(src, cache)
        if src.kind == "git":
            return _fetch_git(src, cache)
        if src.kind == "s3":
            return _fetch_s3(src, cache)
        return _fetch_stored(src, cache, store)
    except OSError as exc:  # the cache itself: full disk, permissions
        raise cache.fail(f"cannot use the model cache {cache_dir} ({exc})") from None


class _Cache:
    """One agent's model cache: entries, locks, temporary files, the ETag index."""

    def __init__(self, root: Path, shown: str) -> None:
        self.root = root
        self.shown = shown

    def fail(self, message: str) -> ModelError:
        """The error for this source."""
        return ModelError(f"model.source {self.shown!r}: {message}")

    def ready(self, name: str) -> Path | None:
        """The model directory of a complete entry, or None."""
        if not name:
            return None
        entry = self.root / name
        return single_root(entry) if entry.is_dir() else None

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the entry's lock (other executors on this agent wait)."""
        locks = self.root / ".locks"
        try:
            locks.mkdir(parents=True, exist_ok=True)
            handle = (locks / f"{name}.lock").open("w")
        except OSError as exc:
            raise self.fail(f"cannot use the model cache {self.root} ({exc})") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def download(self, chunks: Iterable[bytes]) -> tuple[Path, str]:
        """Write ``chunks`` to a temporary file in the cache; return it and its digest."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.root, prefix=".download-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name), digest.hexdigest()

    def unpack(self, digest: str, archive: Path | bytes) -> Path:
        """Unpack a gzip tarball into the entry ``digest`` (once); its model directory."""
        found = self.ready(digest)
        if found is not None:
            return found
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".unpack-"))
        try:
            with _open_archive(archive) as fh:
                if fh.read(2) != b"\x1f\x8b":
                    raise self.fail("cannot unpack: not a gzip tarball")
                fh.seek(0)
                with tarfile.open(fileobj=fh, mode="r:gz") as tar:
                    safe_extract(tar, tmp)
            tmp.rename(self.root / digest)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            found = self.ready(digest)
            if found is not None:  # another executor unpacked it first
                return found
            if isinstance(exc, tarfile.TarError | EOFError | zlib.error | gzip.BadGzipFile):
                raise self.fail(f"cannot unpack: not a valid gzip tarball ({exc})") from None
            raise self.fail(f"cannot unpack ({exc})") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return single_root(self.root / digest)

    def index_get(self, key: str) -> dict[str, str] | None:
        """What the index remembers of an unpinned URL or object."""
        try:
            entries = json.loads((self.root / _INDEX).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        entry = entries.get(key) if isinstance(entries, dict) else None
        return entry if isinstance(entry, dict) else None

    def index_put(self, key: str, entry: dict[str, str]) -> None:
        """Remember a URL's validators and digest (read-modify-rename under a lock)."""
        path = self.root / _INDEX
        with self.lock("index"):
            try:
                entries = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                entries = {}
            if not isinstance(entries, dict):
                entries = {}
            entries[key] = entry
            tmp = path.with_name(f"{_INDEX}.{os.getpid()}")
            tmp.write_text(json.dumps(entries, indent=1, sort_keys=True), "utf-8")
            tmp.replace(path)


def safe_extract(tar: tarfile.TarFile, dest: Path) -> None:
    """Extract regular files and folders only, all inside ``dest``.

    Python 3.11.4+ does this with ``filter="data"``; the executor image's Python
    (Debian bookworm's 3.11.2) has no filters, so the same rule is applied by hand there.
    """
    if hasattr(tarfile, "data_filter"):
        tar.extractall(dest, filter="data")
        return
    root = dest.resolve()
    for member in tar.getmembers():
        target = (root / member.name).resolve()
        if not target.is_relative_to(root) or member.name.startswith("/"):
            raise tarfile.TarError(f"{member.name!r} points outside the model folder")
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
        elif member.isfile():
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
            target.chmod(0o755 if member.mode & 0o111 else 0o644)
        else:
            raise tarfile.TarError(f"{member.name!r}: links and devices are not allowed")


@contextlib.contextmanager
def _open_archive(archive: Path | bytes) -> Iterator[IO[bytes]]:
    if isinstance(archive, bytes):
        yield io.BytesIO(archive)
    else:
        with archive.open("rb") as fh:
            yield fh


def single_root(folder: Path) -> Path:
    """A tarball of ``model/`` unpacks to one folder: use it as the model directory."""
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def _key(prefix: str, location: str) -> str:
    return f"{prefix}-{hashlib.sha256(location.encode()).hexdigest()[:32]}"


def _check_pin(cache: _Cache, pin: str | None, digest: str) -> None:
    if pin is not None and digest != pin:
        raise cache.fail(f"the tarball's sha256 is {digest}, but the source pins {pin}")


# --- local ---------------------------------------------------------------------------
def _fetch_local(src: Source, cache: _Cache) -> Path:
    path = Path(src.location)
    if path.is_dir():
        if src.pin is not None:
            raise cache.fail("a #sha256= pin applies to a .tar.gz file, not a directory")
        return path
    if not (path.is_file() and path.name.endswith(_TARBALL)):
        raise cache.fail("no such directory or .tar.gz file")
    try:
        digest = _file_digest(path)
    except OSError as exc:
        raise cache.fail(f"cannot read it ({exc.strerror})") from None
    _check_pin(cache, src.pin, digest)
    found = cache.ready(digest)
    if found is not None:
        return found
    with cache.lock(digest):
        return cache.unpack(digest, path)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_pinned(
    src: Source, pin: str, cache: _Cache, get: Callable[[], tuple[Path, str]]
) -> Path:
    """A pinned URL or object: its digest's cache entry, fetched (once, under a lock) with
    ``get() -> (temporary file, digest)`` when missing; no request at all when present."""
    found = cache.ready(pin)
    if found is not None:
        log.info("%s: cached (pinned), nothing fetched", src.display)
        return found
    with cache.lock(pin):
        found = cache.ready(pin)
        if found is not None:
            return found
        tmp, digest = get()
        try:
            _check_pin(cache, pin, digest)
            return cache.unpack(digest, tmp)
        finally:
            tmp.unlink(missing_ok=True)


# --- http(s) -------------------------------------------------------------------------
def _fetch_http(src: Source, cache: _Cache) -> Path:
    if src.pin is not None:

        def get() -> tuple[Path, str]:
            download = _http_get(src, cache, {})
            if download is None:
                raise cache.fail("the server answered 304 Not Modified to a plain GET")
            return download[0], download[1]

        return _fetch_pinned(src, src.pin, cache, get)
    key = _key("url", src.location)
    with cache.lock(key):
        known = cache.index_get(key)
        headers: dict[str, str] = {}
        if known is not None and cache.ready(known.get("digest", "")) is not None:
            if known.get("etag"):
                headers["If-None-Match"] = known["etag"]
            if known.get("last_modified"):
                headers["If-Modified-Since"] = known["last_modified"]
        download = _http_get(src, cache, headers)
        if download is None:
            found = cache.ready(known.get("digest", "")) if known is not None else None
            if found is None:
                raise cache.fail("the server answered 304 Not Modified to a plain GET")
            log.info("%s: unchanged (304), using the cached copy", src.display)
            return found
        tmp, digest, validators = download
        try:
            with cache.lock(digest):
                folder = cache.unpack(digest, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        cache.index_put(key, {"source": src.display, "digest": digest, **validators})
        return folder


def _http_get(
    src: Source, cache: _Cache, headers: dict[str, str]
) -> tuple[Path, str, dict[str, str]] | None:
    """Download to a temporary file: (file, digest, validators), or None on 304."""
    parts = urlsplit(src.location)
    url = src.location
    request_headers = {"User-Agent": "ancho", **headers}
    if parts.username is not None:  # https://user:password@host/… → basic auth
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc += f":{parts.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        request_headers["Authorization"] = "Basic " + base64.b64encode(creds.encode()).decode()
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_ssl_context(cache)))
    started = time.monotonic()
    try:
        response = opener.open(urllib.request.Request(url, headers=request_headers),
                               timeout=HTTP_TIMEOUT_S)  # fmt: skip
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 304:
            return None
        raise cache.fail(f"the server answered {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise cache.fail(_network_reason(exc.reason, parts)) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise cache.fail(_network_reason(exc, parts)) from None
    with response:
        validators = {
            name: value
            for name, value in (
                ("etag", response.headers.get("ETag")),
                ("last_modified", response.headers.get("Last-Modified")),
            )
            if value
        }
        try:
            tmp, digest = cache.download(iter(lambda: response.read(_BLOCK), b""))
        except (OSError, http.client.HTTPException) as exc:
            raise cache.fail(f"the download broke off ({_network_reason(exc, parts)})") from None
    log.info("%s: downloaded %d bytes in %.2f s", src.display, tmp.stat().st_size,
             time.monotonic() - started)  # fmt: skip
    return tmp, digest, validators


def _network_reason(reason: object, parts: SplitResult) -> str:
    """Why a connection failed, in words (no URL: the caller names the source)."""
    host = parts.hostname or "?"
    where = f"{host}:{parts.port}" if parts.port else host
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"the certificate of {where} is not trusted ({reason.verify_message});"
            f" point {CA_BUNDLE_ENV} at its CA bundle"
        )
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot connect to {where} (connection refused)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the host {host}"
    if isinstance(reason, TimeoutError | socket.timeout):
        return f"{where} did not answer within {HTTP_TIMEOUT_S:.0f} s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS with {where} failed ({reason.reason or reason})"
    if isinstance(reason, OSError):
        return f"cannot reach {where} ({reason.strerror or reason})"
    return f"cannot reach {where} ({reason})"


def _ssl_context(cache: _Cache) -> ssl.SSLContext:
    """The default trust (which honours SSL_CERT_FILE/SSL_CERT_DIR) plus ANCHO_CA_BUNDLE."""
    context = ssl.create_default_context()
    extra = os.environ.get(CA_BUNDLE_ENV)
    if extra:
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            raise cache.fail(f"cannot load {CA_BUNDLE_ENV}={extra} ({exc})") from None
    return context


def _ca_bundle_file(cache: _Cache) -> str | None:
    """For tools that take one CA file (git, boto3): the default bundle plus
    ANCHO_CA_BUNDLE in one file in the cache, or None when ANCHO_CA_BUNDLE is unset."""
    extra = os.environ.get(CA_BUNDLE_ENV)
    if not extra:
        return None
    paths = ssl.get_default_verify_paths()
    parts: list[bytes] = []
    for name in (paths.cafile or paths.openssl_cafile, extra):
        try:
            parts.append(Path(name).read_bytes())
        except OSError as exc:
            if name == extra:
                raise cache.fail(f"cannot read {CA_BUNDLE_ENV}={extra} ({exc.strerror})") from None
    content = b"\n".join(parts)
    path = cache.root / ".ca" / f"{hashlib.sha256(content).hexdigest()[:24]}.pem"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_bytes(content)
        tmp.replace(path)
    return str(path)


# --- git -----------------------------------------------------------------------------
def _fetch_git(src: Source, cache: _Cache) -> Path:
    ref = src.ref or "HEAD"
    commit = ref.lower() if _COMMIT.match(ref.lower()) else _ls_remote(src, cache, ref)
    name = f"git-{commit}"
    found = cache.ready(name)
    if found is not None:
        log.info("%s: commit %s cached", src.display, commit[:12])
        return found
    with cache.lock(name):
        found = cache.ready(name)
        if found is not None:
            return found
        tmp = Path(tempfile.mkdtemp(dir=cache.root, prefix=".git-"))
        try:
            started = time.monotonic()
            _git(src, cache, ["init", "-q", str(tmp)], "init")
            at = ["-C", str(tmp)]
            shallow = [*at, "fetch", "-q", "--no-tags", "--depth", "1", src.location, commit]
            if not _git(src, cache, shallow, "fetch", check=False):
                # The server does not serve unadvertised commits: fetch its branches and tags.
                _git(src, cache, [*at, "fetch", "-q", "--no-tags", src.location,
                                  "+refs/heads/*:refs/remotes/origin/*",
                                  "+refs/tags/*:refs/tags/*"], "fetch")  # fmt: skip
                if not _git(src, cache, [*at, "cat-file", "-e", f"{commit}^{{commit}}"],
                            "cat-file", check=False):  # fmt: skip
                    raise cache.fail(f"commit {commit} is not in the repository")
            _git(src, cache, [*at, "-c", "advice.detachedHead=false", "checkout", "-q",
                              "--detach", commit], "checkout")  # fmt: skip
            shutil.rmtree(tmp / ".git")
            tmp.rename(cache.root / name)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("%s: commit %s fetched in %.2f s", src.display, commit[:12],
                 time.monotonic() - started)  # fmt: skip
    return single_root(cache.root / name)


def _ls_remote(src: Source, cache: _Cache, ref: str) -> str:
    out = _git(src, cache, ["ls-remote", src.location, ref, f"{ref}^{{}}"], "ls-remote")
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name.strip()] = sha.strip()
    candidates = [ref] if ref.startswith("refs/") or ref == "HEAD" else []
    candidates += [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for name in candidates:
        for exact in (f"{name}^{{}}", name):  # an annotated tag peels to its commit
            if exact in refs:
                return refs[exact]
    raise cache.fail(f"no branch or tag {ref!r} in the repository")


def _git(src: Source, cache: _Cache, args: list[str], what: str, check: bool = True) -> str:
    """Run git without prompts and with a timeout; its stdout (or "" when not ``check``
    and it failed)."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    bundle = _ca_bundle_file(cache)
    if bundle is not None:
        env["GIT_SSL_CAINFO"] = bundle
    try:
        proc = subprocess.run(
            ["git", *args], capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT_S,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except FileNotFoundError:
        raise cache.fail("git sources need git, which is not installed here") from None
    except subprocess.TimeoutExpired:
        raise cache.fail(f"git {what} took more than {GIT_TIMEOUT_S:.0f} s") from None
    if proc.returncode == 0:
        return proc.stdout or "ok"
    if not check:
        return ""
    raise cache.fail(f"git {what} failed: {_git_reason(proc.stderr, src)}")


def _git_reason(stderr: str, src: Source) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    reason = (fatal or lines or ["no message"])[-1]
    reason = re.sub(r"^(fatal|error): ", "", reason)
    parts = urlsplit(src.location)
    for secret in (parts.password, parts.username if parts.password is None else None):
        if secret:
            reason = reason.replace(secret, "***")
    return re.sub(r"//([^:/@\s]+):[^@\s]*@", r"//\1:***@", reason)


# --- s3 ------------------------------------------------------------------------------
def _fetch_s3(src: Source, cache: _Cache) -> Path:
    bucket, _, key = src.location.partition("/")
    if src.pin is not None:

        def get() -> tuple[Path, str]:
            tmp, digest, _ = _s3_get(_s3_client(cache), cache, bucket, key)
            return tmp, digest

        return _fetch_pinned(src, src.pin, cache, get)
    client = _s3_client(cache)
    with _s3_errors(cache, bucket, key):
        etag = str(client.head_object(Bucket=bucket, Key=key).get("ETag", ""))
    index_key = _key("s3", src.location)
    with cache.lock(index_key):
        known = cache.index_get(index_key)
        if known is not None and etag and known.get("etag") == etag:
            found = cache.ready(known.get("digest", ""))
            if found is not None:
                log.info("%s: unchanged (ETag), using the cached copy", src.display)
                return found
        tmp, digest, etag = _s3_get(client, cache, bucket, key)
        try:
            with cache.lock(digest):
                folder = cache.unpack(digest, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        if etag:  # the ETag of what was read, even if the object changed since the HEAD
            cache.index_put(index_key, {"source": src.display, "digest": digest, "etag": etag})
        return folder


def _s3_client(cache: _Cache) -> Any:
    """A boto3 S3 client from the standard environment (AWS_*, ~/.aws/config)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise cache.fail("s3:// sources need boto3 (pip install boto3)") from None
    config = Config(connect_timeout=10, read_timeout=HTTP_TIMEOUT_S,
                    retries={"max_attempts": 3, "mode": "standard"})  # fmt: skip
    bundle = _ca_bundle_file(cache)
    with _s3_errors(cache, "", ""):
        session = boto3.session.Session()
        if bundle is not None:
            return session.client("s3", config=config, verify=bundle)
        return session.client("s3", config=config)


def _s3_get(client: Any, cache: _Cache, bucket: str, key: str) -> tuple[Path, str, str]:
    """Download an object to a temporary file: (file, digest, the ETag it had)."""
    started = time.monotonic()
    with _s3_errors(cache, bucket, key):
        response = client.get_object(Bucket=bucket, Key=key)
        body = response["Body"]
        try:
            tmp, digest = cache.download(iter(lambda: body.read(_BLOCK), b""))
        finally:
            body.close()
    log.info("%s: downloaded %d bytes in %.2f s", cache.shown, tmp.stat().st_size,
             time.monotonic() - started)  # fmt: skip
    return tmp, digest, str(response.get("ETag", ""))


@contextlib.contextmanager
def _s3_errors(cache: _Cache, bucket: str, key: str) -> Iterator[None]:
    """Turn botocore's exceptions into one sentence (never a credential)."""
    from botocore import exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError):
        raise cache.fail(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
            " or configure ~/.aws)"
        ) from None
    except bx.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchKey", "404", "NotFound"):
            raise cache.fail(f"no object {key!r} in bucket {bucket!r}") from None
        if code == "NoSuchBucket":
            raise cache.fail(f"no bucket {bucket!r}") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                    "Forbidden", "ExpiredToken", "InvalidToken") or status == 403:  # fmt: skip
            raise cache.fail(
                f"access denied by S3 ({code or status}); check the AWS credentials"
                " and the bucket's permissions"
            ) from None
        raise cache.fail(f"S3 answered {code or status}: {error.get('Message', '')}") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise cache.fail(f"cannot reach the S3 endpoint ({exc})") from None
    except bx.BotoCoreError as exc:
        raise cache.fail(f"the S3 request failed ({type(exc).__name__}: {exc})") from None


# --- sha256: models kept in the store --------------------------------------------------
def _fetch_stored(src: Source, cache: _Cache, store: Store | None) -> Path:
    digest = src.location
    found = cache.ready(digest)
    if found is not None:
        log.info("%s: cached", src.display)
        return found
    if store is None:
        raise cache.fail("sha256: models are kept in the result store, and none was given")
    with cache.lock(digest):
        found = cache.ready(digest)
        if found is not None:
            return found
        try:
            data = store.get_model(digest)
        except NotFound:
            raise cache.fail(
                "no model with this digest in the store (upload it with POST /api/v1/models)"
            ) from None
        except AnchoError as exc:
            raise cache.fail(f"cannot read it from the store ({exc.format_message()})") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != digest:
            raise cache.fail(f"the store holds data whose sha256 is {actual}, not {digest}")
        return cache.unpack(digest, data)


def model_digest(data: bytes) -> str:
    """The ``sha256:`` source of a model tarball's bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
