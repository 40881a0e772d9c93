"""The REST API from the command line: ``ancho submit`` and query commands with ``--server``.

Where the server and token come from, first found wins: the ``--server`` flag, then
``ANCHO_SERVER`` / ``ANCHO_TOKEN``, then ``~/.config/ancho/config.toml``
(``server = "http://host:8080"``, ``token = "…"``; ``XDG_CONFIG_HOME`` is honoured).
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import os
import tarfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .errors import AnchoError, ErrorDetail, NotFound, SpecError
from .store import RunRecord

TIMEOUT_S = 60.0
#: Not packed into an uploaded model.
SKIP_NAMES = {".git", "__pycache__", ".ancho", ".venv", ".mypy_cache", ".pytest_cache"}


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/ancho/config.toml`` (default ``~/.config``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ancho" / "config.toml"


def _config() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise AnchoError(f"{path}: cannot read the config file ({exc})") from None


def server_url(flag: str | None) -> str | None:
    """The server to talk to, or None for the local store."""
    url = flag or os.environ.get("ANCHO_SERVER") or _config().get("server")
    return str(url).rstrip("/") if url else None


@dataclass(slots=True)
class Client:
    """A thin, typed wrapper of the REST API."""

    server: str
    token: str | None

    @classmethod
    def connect(cls, server: str) -> Client:
        """A client for ``server`` with the token from the environment or config."""
        token = os.environ.get("ANCHO_TOKEN") or _config().get("token")
        return cls(server, str(token) if token else None)

    # --- plumbing -----------------------------------------------------------------------
    def _open(self, method: str, path: str, body: bytes | None = None,
              content_type: str | None = None) -> http.client.HTTPResponse:  # fmt: skip
        req = urllib.request.Request(self.server + path, data=body, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        if content_type:
            req.add_header("Content-Type", content_type)
        try:
            resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=TIMEOUT_S)
            return resp
        except urllib.error.HTTPError as exc:
            raise _api_error(exc, self.server) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AnchoError(f"server {self.server}: unreachable ({reason})") from None

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        with self._open(method, path, body, "application/json" if body else None) as resp:
            return json.load(resp)

    # --- the API ------------------------------------------------------------------------
    def healthz(self) -> dict[str, Any]:
        """``{"status": "ok", "role": "leader"|"standby"}``: whether this server schedules."""
        return dict(self._json("GET", "/healthz"))

    def upload_model(self, folder_or_tarball: Path) -> str:
        """Upload a model folder (packed here) or ``.tar.gz``; its ``sha256:`` source."""
        data = (folder_or_tarball.read_bytes() if folder_or_tarball.is_file()
                else pack(folder_or_tarball))  # fmt: skip
        with self._open("POST", "/api/v1/models", data, "application/gzip") as resp:
            return str(json.load(resp)["source"])

    def submit(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a spec; ``{"id", "state"}``."""
        result: dict[str, Any] = self._json("POST", "/api/v1/runs", spec)
        return result

    def submit_experiment(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Submit a sweep spec; ``{"id", "runs"}``."""
        result: dict[str, Any] = self._json("POST", "/api/v1/experiments", spec)
        return result

    def experiments(self) -> list[dict[str, Any]]:
        """The caller's experiments, newest first."""
        return list(self._json("GET", "/api/v1/experiments")["experiments"])

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment's points, their runs' states and summaries."""
        result: dict[str, Any] = self._json("GET", f"/api/v1/experiments/{_quote(experiment_id)}")
        return result

    def runs(self) -> list[dict[str, Any]]:
        """The caller's runs, newest first."""
        return list(self._json("GET", "/api/v1/runs")["runs"])

    def run(self, run_id: str) -> dict[str, Any]:
        """One run's state and counts."""
        result: dict[str, Any] = self._json("GET", f"/api/v1/runs/{_quote(run_id)}")
        return result

    def summary(self, run_id: str, *, recompute: bool = False) -> dict[str, Any]:
        """The summary document (``recompute``: the built-in statistics recomputed by
        the server's Spark job from every stored result)."""
        query = "?recompute=true" if recompute else ""  # the API's one spelling
        path = f"/api/v1/runs/{_quote(run_id)}/summary{query}"
        result: dict[str, Any] = self._json("GET", path)
        return result

    def kill(self, run_id: str) -> dict[str, Any]:
        """Ask for the run to be killed."""
        result: dict[str, Any] = self._json("DELETE", f"/api/v1/runs/{_quote(run_id)}")
        return result

    def results(self, run_id: str, fmt: str) -> Iterator[bytes]:
        """The streamed results body, in pieces."""
        with self._open("GET", f"/api/v1/runs/{_quote(run_id)}/results?format={fmt}") as resp:
            while chunk := resp.read(1 << 16):
                yield chunk

    def result_rows(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The results as JSON-lines dicts, streamed."""
        with self._open("GET", f"/api/v1/runs/{_quote(run_id)}/results?format=jsonl") as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)

    def histogram(self, run_id: str, output: str, bins: int) -> dict[str, Any]:
        """The web page's histogram document of one output."""
        query = urllib.parse.urlencode({"output": output, "bins": bins})
        doc: dict[str, Any] = self._json("GET", f"/api/v1/runs/{_quote(run_id)}/histogram?{query}")
        return doc

    def logs(self, run_id: str, follow: bool) -> Iterator[dict[str, Any]]:
        """Log events; with ``follow`` until the run ends."""
        path = f"/api/v1/runs/{_quote(run_id)}/logs?follow={int(follow)}"
        with self._open("GET", path) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)


def _quote(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


def _api_error(exc: urllib.error.HTTPError, server: str) -> AnchoError:
    try:
        body = json.loads(exc.read() or b"{}")
        message = str(body.get("error") or exc.reason)
        details = [ErrorDetail(str(d.get("path", "")), str(d.get("message", "")))
                   for d in body.get("details", [])]  # fmt: skip
    except (ValueError, AttributeError):
        message, details = f"HTTP {exc.code} {exc.reason}", []
    if exc.code == 404:
        return NotFound(message)
    if exc.code == 401:
        return AnchoError(f"server {server}: {message} (set ANCHO_TOKEN or the config file)")
    if exc.code == 400:
        return SpecError(message, details)
    return AnchoError(f"server {server}: {message}", details)


def pack(folder: Path) -> bytes:
    """A deterministic ``.tar.gz`` of a model folder (same files → same digest)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:  # fmt: skip
        tar.add(folder, arcname="model", filter=_normalise)
    return buf.getvalue()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    if Path(info.name).name in SKIP_NAMES or info.name.endswith((".pyc", ".pyo")):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def record_from_dict(doc: dict[str, Any]) -> RunRecord:
    """A run as the API shows it, as a :class:`RunRecord` (for the progress bar)."""
    counts = doc.get("counts", {})
    return RunRecord(
        id=doc["id"],
        name=doc.get("name", ""),
        spec=doc.get("spec") or {},
        seed=int(doc.get("seed", 0)),
        sequences=int(counts.get("total", 0)),
        state=doc["state"],
        owner=doc.get("owner", ""),
        outputs=doc.get("outputs"),
        ok=int(counts.get("ok", 0)),
        failed=int(counts.get("failed", 0)),
        running=int(counts.get("running", 0)),
        reason=doc.get("reason"),
        created_at=float(doc.get("created_at") or 0.0),
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
    )


#: Sources the server fetches itself; anything else is a local path the client uploads.
REMOTE_SOURCES = ("https://", "http://", "git+", "s3://", "sha256:")


def wait(client: Client, run_id: str, progress: TextIO | None, poll_s: float = 0.5) -> RunRecord:
    """Poll the run until it ends, drawing a progress bar on ``progress``."""
    return follow(lambda: client.run(run_id), progress, poll_s)


def follow(fetch: Callable[[], dict[str, Any]], progress: TextIO | None, poll_s: float = 0.5,
           timeout_s: float | None = None) -> RunRecord:  # fmt: skip
    """Poll a run's document (``fetch()``) until the run ends, drawing a progress bar on
    ``progress``; AnchoError after ``timeout_s``."""
    from .progress import ProgressBar

    doc = fetch()
    record = record_from_dict(doc)
    bar = ProgressBar(progress, record.sequences) if progress is not None else None
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        if bar is not None:
            bar.update(record, doc.get("live"))
        if record.done:
            break
        if deadline is not None and time.monotonic() >= deadline:
            raise AnchoError(f"run {record.id} is still {record.state} after {timeout_s:g} s")
        time.sleep(poll_s)
        doc = fetch()
        record = record_from_dict(doc)
    if bar is not None:
        bar.close(record)
    return record


def wait_experiment(
    client: Client, run_ids: list[str], progress: TextIO | None, poll_s: float = 0.5
) -> list[RunRecord]:
    """Poll an experiment's runs (one request a poll) until every one has ended, drawing
    one progress bar over all their sequences on ``progress``."""
    from .progress import ProgressBar
    from .runner import together

    wanted = set(run_ids)

    def records() -> list[RunRecord]:
        found = {d["id"]: record_from_dict(d) for d in client.runs() if d["id"] in wanted}
        return [found[r] for r in run_ids if r in found]

    runs = records()
    bar = ProgressBar(progress, sum(r.sequences for r in runs)) if progress else None
    while True:
        if bar is not None:
            bar.update(together(runs))
        if len(runs) == len(run_ids) and all(r.done for r in runs):
            break
        time.sleep(poll_s)
        runs = records()
    if bar is not None:
        bar.close(together(runs))
    return runs
