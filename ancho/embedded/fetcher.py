"""The agent's fetcher: ``CommandInfo.uris`` into the sandbox before the executor starts.

It does what Mesos 1.11's fetcher does (docs/fetcher.md) for the URIs an agent can
reach without a Hadoop client:

* ``http://`` and ``https://`` URIs are downloaded (redirects followed; anything but a
  final 200 fails); ``file://`` URIs and absolute paths are copied. A relative path
  fails, as it does on an agent without ``--frameworks_home``; other schemes fail.
* The copy is named after the URI's last ``/`` component (a query string included, as
  Mesos), or ``output_file``, a path relative to the sandbox.
* ``executable``: the copy is made executable (mode 755) and never extracted.
* ``extract`` (true unless given): ``.tar``, ``.tgz``, ``.tar.gz``, ``.tbz2``,
  ``.tar.bz2``, ``.txz``, ``.tar.xz`` and ``.zip`` are unpacked into the sandbox, a
  bare ``.gz`` is gunzipped next to it; anything else stays as it is.
* ``cache``: the first fetch of a URI for a user downloads it into the cache (one
  folder per user under the agent's work directory, emptied when the agent starts);
  later fetches copy or unpack it from there. Concurrent fetches of one URI wait for
  the first. Without the cache, an unpacked archive stays in the sandbox beside what
  it held; from the cache only what it held lands there.

Archives are unpacked without absolute paths, ``..`` or links out of the sandbox
(libarchive's secure flags; Python's ``data`` filter). Every step is logged to the
sandbox's ``stderr``, where Mesos' fetcher writes its log.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import ssl
import stat
import tarfile
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

__all__ = ["FetchError", "Fetcher"]

#: Mesos' --fetcher_stall_timeout default: a download that gets no byte for this long fails.
STALL_TIMEOUT_S = 60.0
_CHUNK = 1 << 16
_TARS = (".tar", ".tgz", ".tar.gz", ".tbz2", ".tar.bz2", ".txz", ".tar.xz")
_NO_USER = "_no_user"  # the cache folder of fetches without a user (Mesos keeps those apart)


class FetchError(Exception):
    """A URI could not be fetched; the message names it and says why."""


@dataclass(slots=True, frozen=True)
class _Uri:
    value: str
    executable: bool
    extract: bool
    cache: bool
    output_file: str | None

    @classmethod
    def parse(cls, raw: object) -> _Uri:
        if not isinstance(raw, dict) or not isinstance(raw.get("value"), str):
            raise FetchError("Could not fetch: a CommandInfo.URI without a string 'value'")
        output = raw.get("output_file")
        return cls(
            value=raw["value"],
            executable=bool(raw.get("executable", False)),
            extract=bool(raw.get("extract", True)),
            cache=bool(raw.get("cache", False)),
            output_file=str(output) if output is not None else None,
        )


def basename(uri: str) -> str:
    """The file name a URI is fetched to: what follows its last ``/`` (Mesos' rule)."""
    if any(ch in uri for ch in "\\'\0"):
        raise FetchError(f"Illegal characters in URI: {uri!r}")
    index = uri.find("://")
    if index > 1:
        path = uri[index + 3 :]
        slash = path.find("/")
        if slash < 0 or len(path) <= slash + 1:
            raise FetchError(f"Malformed URI (missing path): {uri}")
        return path[path.rfind("/") + 1 :]
    return PurePosixPath(uri).name


def _validate(uri: _Uri) -> None:
    basename(uri.value)
    if uri.output_file is not None:
        if not uri.output_file:
            raise FetchError(f"URI output file path is empty (for '{uri.value}')")
        if uri.output_file.startswith("/") or ".." in PurePosixPath(uri.output_file).parts:
            raise FetchError(
                f"URI output file must be within the sandbox directory: '{uri.output_file}'"
            )


def _local_path(uri: str) -> Path | None:
    """The file a ``file://`` URI or a scheme-less path names (None for other URIs)."""
    is_file = uri.startswith("file://")
    if not is_file and "://" in uri:
        return None
    path = uri.removeprefix("file://")
    path = path.removeprefix("localhost")
    if not path.startswith("/"):
        if is_file:
            raise FetchError("File URI only supports absolute paths")
        raise FetchError(
            "A relative path was passed for the resource but the Mesos framework home"
            " was not specified. Please either provide this config option or avoid"
            " using a relative path"
        )
    return Path(path)


class Fetcher:
    """Fetches URIs into sandboxes, with a cache shared by the agent's executors."""

    def __init__(self, cache_dir: Path, stall_timeout_s: float = STALL_TIMEOUT_S) -> None:
        self.cache_dir = cache_dir
        self.stall_timeout_s = stall_timeout_s
        # The agent clears its fetcher cache when it starts, as Mesos' agent does.
        shutil.rmtree(cache_dir, ignore_errors=True)
        self._lock = threading.Lock()
        self._serial = 0
        self._entries: dict[str, Path] = {}  # "user@uri" -> the cached file
        self._key_locks: dict[str, threading.Lock] = {}

    def fetch(
        self,
        uris: list[Any],
        sandbox: Path,
        *,
        user: str | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> None:
        """Fetch every URI into ``sandbox`` in order; raise :class:`FetchError` at the
        first failure. ``cancelled()`` is polled while downloading."""
        parsed = [_Uri.parse(raw) for raw in uris]
        try:
            for uri in parsed:
                _validate(uri)
        except FetchError as exc:
            raise FetchError(f"Could not fetch: {exc}") from None
        sandbox.mkdir(parents=True, exist_ok=True)
        with open(sandbox / "stderr", "a", encoding="utf-8") as log:
            for uri in parsed:
                log.write(f"Fetching URI '{uri.value}'\n")
                log.flush()
                try:
                    where = self._fetch_one(uri, sandbox, user, cancelled, log)
                except FetchError as exc:
                    log.write(f"Failed to fetch '{uri.value}': {exc}\n")
                    raise FetchError(f"Failed to fetch '{uri.value}': {exc}") from None
                log.write(f"Fetched '{uri.value}' to '{where}'\n")
            log.write(f"Successfully fetched all URIs into '{sandbox}'\n")

    # ------------------------------------------------------------------ one URI
    def _fetch_one(
        self,
        uri: _Uri,
        sandbox: Path,
        user: str | None,
        cancelled: Callable[[], bool],
        log: Any,
    ) -> Path:
        destination = sandbox / (uri.output_file or basename(uri.value))
        if destination.resolve() == sandbox.resolve():
            raise FetchError("the URI names no file; give it an output_file")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if not uri.cache:
            self._download(uri.value, destination, cancelled)
            if uri.executable:
                _make_executable(destination)
            elif uri.extract and not _extract(destination, sandbox):
                log.write(f"Not extracting '{uri.value}': it does not seem to be an archive\n")
            return destination
        cached = self._cached(uri.value, user, cancelled)
        log.write(f"Fetching '{uri.value}' from the cache ({cached.name})\n")
        if uri.executable:
            _copy(cached, destination)
            _make_executable(destination)
            return destination
        if uri.extract and _extract(cached, sandbox):
            return sandbox
        _copy(cached, destination)
        return destination

    def _cached(self, uri: str, user: str | None, cancelled: Callable[[], bool]) -> Path:
        """The cache file of ``uri`` for ``user``, downloading it the first time."""
        key = uri if user is None else f"{user}@{uri}"
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # a concurrent fetch of the same URI waits for the first
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None and entry.exists():
                return entry
            with self._lock:
                self._serial += 1
                serial = self._serial
            name = basename(uri)
            if len(name) > 20:  # Mesos' cache names: a serial and the name's ends
                name = f"{name[:10]}_{name[-10:]}"
            folder = self.cache_dir / (user or _NO_USER)
            folder.mkdir(parents=True, exist_ok=True)
            entry = folder / f"c{serial}-{name}"
            self._download(uri, entry, cancelled)
            with self._lock:
                self._entries[key] = entry
            return entry

    def _download(self, uri: str, destination: Path, cancelled: Callable[[], bool]) -> None:
        source = uri.lstrip()
        local = _local_path(source)
        if local is not None:
            _copy(local, destination)
            return
        if not source.startswith(("http://", "https://")):
            scheme = source.split("://", 1)[0]
            raise FetchError(
                f"unsupported URI scheme '{scheme}': this agent fetches http, https and"
                " file URIs and absolute paths (Mesos hands other schemes to a Hadoop client)"
            )
        partial = destination.with_name(f".{destination.name}.part")
        try:
            request = urllib.request.Request(source, headers={"User-Agent": "mesos-fetcher"})
            context = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR
            timeout = self.stall_timeout_s
            with (
                urllib.request.urlopen(request, timeout=timeout, context=context) as response,
                open(partial, "wb") as out,
            ):
                if response.status != 200:
                    raise FetchError(
                        f"Error downloading resource, received HTTP return code {response.status}"
                    )
                _pump(response, out, cancelled)
            partial.replace(destination)
        except urllib.error.HTTPError as exc:
            raise FetchError(
                f"Error downloading resource, received HTTP return code {exc.code}"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FetchError(f"Error downloading resource: {reason}") from None
        finally:
            partial.unlink(missing_ok=True)


def _pump(response: BinaryIO, out: BinaryIO, cancelled: Callable[[], bool]) -> None:
    while chunk := response.read(_CHUNK):
        if cancelled():
            raise FetchError("the fetch was cancelled (the container is being destroyed)")
        out.write(chunk)


def _copy(source: Path, destination: Path) -> None:
    try:
        if source.resolve() == destination.resolve():
            return  # already in place (a file URI into its own sandbox)
        shutil.copyfile(source, destination)
    except OSError as exc:
        raise FetchError(f"Failed to copy '{source}': {exc.strerror or exc}") from None


def _make_executable(path: Path) -> None:
    try:
        path.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    except OSError as exc:
        raise FetchError(f"Failed to chmod executable '{path}': {exc.strerror}") from None


def _extract(archive: Path, sandbox: Path) -> bool:
    """Unpack ``archive`` into ``sandbox``; False when its name is not an archive's."""
    name = archive.name
    try:
        if name.endswith(_TARS):
            with tarfile.open(archive) as tar:
                tar.extractall(sandbox, filter="data")
        elif name.endswith(".zip"):
            _unzip(archive, sandbox)
        elif name.endswith(".gz"):
            target = sandbox / name[: -len(".gz")]
            with gzip.open(archive, "rb") as packed, open(target, "wb") as out:
                shutil.copyfileobj(packed, out)
        else:
            return False
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise FetchError(f"Failed to extract archive '{archive}' to '{sandbox}': {exc}") from None
    return True


def _unzip(archive: Path, sandbox: Path) -> None:
    root = sandbox.resolve()
    with zipfile.ZipFile(archive) as packed:
        for member in packed.infolist():
            target = (root / member.filename).resolve()
            if not target.is_relative_to(root):
                raise tarfile.TarError(f"{member.filename!r} would land outside the sandbox")
            packed.extract(member, root)
            mode = (member.external_attr >> 16) & 0o777
            if mode and not member.is_dir():
                # Unix permissions, as libarchive restores them (umask-like: no group/other write).
                with contextlib.suppress(OSError):
                    os.chmod(target, mode & ~0o022)
