"""Liveness, Prometheus metrics and the OpenAPI document (no token needed)."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, Response, jsonify

from ..store import TERMINAL_STATES
from .auth import context
from .openapi import document

bp = Blueprint("meta", __name__)

_STATES = ("QUEUED", "STAGING", "RUNNING", "SUMMARIZING", "FINISHED", "FAILED", "KILLED")


@bp.get("/healthz")
def healthz() -> Response:
    """The process answers, and says whether it schedules (``leader``) or stands by."""
    return jsonify({"status": "ok", "role": "leader" if context().leading else "standby"})


@bp.get("/api/v1/openapi.json")
def openapi() -> Response:
    """The API's OpenAPI 3.1 document (its run-spec schema is the package's)."""
    return jsonify(document())


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, every name prefixed ``ancho_``."""
    runs = context().store.list_runs()
    by_state: Counter[str] = Counter(r.state for r in runs)
    ok = sum(r.ok for r in runs)
    failed = sum(r.failed for r in runs)
    active = [r for r in runs if r.state not in TERMINAL_STATES]
    rate = context().rate(ok + failed)
    stats = context().extra()
    remaining = sum(r.sequences - r.ok - r.failed for r in active)
    lines = [
        "# HELP ancho_runs Runs by state.",
        "# TYPE ancho_runs gauge",
        *(f'ancho_runs{{state="{s}"}} {by_state.get(s, 0)}' for s in _STATES),
        "# HELP ancho_sequences_total Sequences stored, by status.",
        "# TYPE ancho_sequences_total counter",
        f'ancho_sequences_total{{status="ok"}} {ok}',
        f'ancho_sequences_total{{status="failed"}} {failed}',
        "# HELP ancho_sequences_per_second Sequences stored per second (between scrapes).",
        "# TYPE ancho_sequences_per_second gauge",
        f"ancho_sequences_per_second {rate:.3f}",
        "# HELP ancho_active_runs_sequences_remaining Sequences not yet stored of active runs.",
        "# TYPE ancho_active_runs_sequences_remaining gauge",
        f"ancho_active_runs_sequences_remaining {remaining}",
        "# HELP ancho_leader 1 when this server schedules, 0 when it stands by.",
        "# TYPE ancho_leader gauge",
        f"ancho_leader {int(context().leading)}",
        "# HELP ancho_executors_running Executors the scheduler holds.",
        "# TYPE ancho_executors_running gauge",
        f"ancho_executors_running {stats.get('executors_running', 0):g}",
        "# HELP ancho_offers_declined_total Resource offers declined.",
        "# TYPE ancho_offers_declined_total counter",
        f"ancho_offers_declined_total {stats.get('offers_declined', 0):g}",
        "# HELP ancho_offers_accepted_total Resource offers used to launch batches.",
        "# TYPE ancho_offers_accepted_total counter",
        f"ancho_offers_accepted_total {stats.get('offers_accepted', 0):g}",
    ]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
