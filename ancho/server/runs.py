"""``/api/v1/runs``: submit, list, inspect, stream results and logs, kill."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from ..errors import ErrorDetail, NotFound, SpecError
from ..output import csv_lines, iter_lines, run_document, summary_document
from ..runner import new_run
from ..spec import RunSpec, spec_from_data
from ..store import RunRecord
from ..store.follow import EventFollower
from .auth import context, current_user, require_user

bp = Blueprint("runs", __name__, url_prefix="/api/v1/runs")
bp.before_request(require_user)

#: Streamed responses are sent in pieces of about this many bytes.
CHUNK_BYTES = 64 * 1024


def own_run(run_id: str) -> RunRecord:
    """The caller's run ``run_id``; 404 for a missing run and for another user's alike."""
    try:
        run = context().store.get_run(run_id)
    except NotFound:
        run = None
    if run is None or run.owner != current_user():
        raise NotFound(f"no run {run_id!r}")
    return run


def _local_source(source: str) -> bool:
    kinds = ("https://", "http://", "git+", "s3://", "sha256:")
    return not source.startswith(kinds)


def served_spec(data: Any) -> RunSpec:
    """A spec posted to the server: valid, with a model source the server can fetch."""
    if data is None:
        raise SpecError("the body must be a run spec as JSON (Content-Type: application/json)")
    spec = spec_from_data(data, where="body")
    if _local_source(spec.model.source):
        raise SpecError(
            "invalid run spec",
            [ErrorDetail("/model/source", "a path on the server is not a model source here:"
                         " upload the model (POST /api/v1/models, or `ancho submit`) and use"
                         " its sha256: source, or an https://, git+ or s3:// source")],
        )  # fmt: skip
    return spec


@bp.post("")
def submit() -> tuple[Response, int, dict[str, str]]:
    """Validate a spec, store the run as the caller's, and schedule it."""
    spec = served_spec(request.get_json(silent=True))
    if spec.sweep is not None:
        why = "a spec with a sweep is an experiment: POST it to /api/v1/experiments"
        raise SpecError("invalid run spec", [ErrorDetail("/sweep", why)])
    run = new_run(spec, owner=current_user())
    ctx = context()
    ctx.store.create_run(run)
    ctx.submit(run)
    body = jsonify({"id": run.id, "state": run.state})
    return body, 201, {"Location": f"/api/v1/runs/{run.id}"}


@bp.get("")
def list_runs() -> Response:
    """The caller's runs, newest first."""
    runs = context().store.list_runs(owner=current_user())
    return jsonify({"runs": [r.to_dict() for r in runs]})


@bp.get("/<run_id>")
def get_run(run_id: str) -> Response:
    """State, counts, timestamps and seed; also the run's spec."""
    run = own_run(run_id)
    return jsonify({**run_document(run, context().store), "spec": run.spec})


@bp.delete("/<run_id>")
def kill_run(run_id: str) -> tuple[Response, int]:
    """Kill the run (its batches stop within a second); a finished run stays as it is."""
    run = own_run(run_id)
    if not run.done:
        context().store.update_run(run_id, kill_requested=1)
        context().kill(run_id)
    return jsonify({"id": run.id, "state": run.state, "kill_requested": not run.done}), 202


@bp.get("/<run_id>/summary")
def get_summary(run_id: str) -> Response:
    """The contract's summary JSON (outputs empty until the summary is computed)."""
    run = own_run(run_id)
    stored = context().store.get_summary(run_id)
    if request.args.get("recompute") == "true":
        stored = {**(stored or {}), "outputs": context().recompute(run)}
    return jsonify(summary_document(run, stored))


@bp.get("/<run_id>/results")
def get_results(run_id: str) -> Response:
    """Every sequence in order as JSON lines or CSV, streamed page by page."""
    run = own_run(run_id)
    fmt = request.args.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise SpecError("invalid query", [ErrorDetail("format", "must be jsonl or csv")])
    rows = context().store.iter_results(run_id)
    lines = iter_lines(rows) if fmt == "jsonl" else csv_lines(rows, list(run.outputs or []))
    mime = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    return Response(stream_with_context(_primed(_chunks(lines))), mimetype=mime)


def _primed(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Read the first piece now: a failure before anything is sent is a JSON error."""
    first = next(chunks, None)

    def rest() -> Iterator[bytes]:
        if first is not None:
            yield first
        yield from chunks

    return rest()


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    buf: list[str] = []
    size = 0
    for line in lines:
        buf.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(buf).encode()
            buf, size = [], 0
    if buf:
        yield "".join(buf).encode()


@bp.get("/<run_id>/logs")
def get_logs(run_id: str) -> Response:
    """Log lines as JSON lines; ``follow=1`` streams new lines until the run ends."""
    own_run(run_id)
    follow = request.args.get("follow", "0") in ("1", "true", "yes")
    try:
        after = int(request.args.get("after", "0"))
        if not 0 <= after < 2**63:  # a store's event ids are 64-bit
            raise ValueError(after)
    except ValueError:
        raise SpecError("invalid query", [ErrorDetail("after", "must be an integer")]) from None
    return Response(stream_with_context(_primed(_log_lines(run_id, after, follow))),
                    mimetype="application/x-ndjson")  # fmt: skip


def _log_lines(run_id: str, after: int, follow: bool) -> Iterator[bytes]:
    ctx = context()
    store = ctx.store
    lines = EventFollower(store, run_id, after)
    while True:
        done = store.get_run(run_id).done  # read before the events: none is missed
        events = lines.poll()
        if events:
            yield "".join(json.dumps(_event(e)) + "\n" for e in events).encode()
        if not follow or done:
            return
        if not events:
            yield b""  # lets the server notice a client that went away
        time.sleep(ctx.follow_poll_s)


def _event(e: Any) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "source": e.source, "level": e.level, "message": e.message}
