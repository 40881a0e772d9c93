"""``/api/v1/experiments``: submit a sweep (one run per point), list, inspect."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from ..errors import ErrorDetail, NotFound, SpecError
from ..experiments import experiment_document, new_experiment, store_experiment
from ..store import ExperimentRecord
from .auth import context, current_user, require_user
from .runs import served_spec

bp = Blueprint("experiments", __name__, url_prefix="/api/v1/experiments")
bp.before_request(require_user)


def own_experiment(experiment_id: str) -> ExperimentRecord:
    """The caller's experiment; 404 for a missing one and for another user's alike."""
    try:
        experiment = context().store.get_experiment(experiment_id)
    except NotFound:
        experiment = None
    if experiment is None or experiment.owner != current_user():
        raise NotFound(f"no experiment {experiment_id!r}")
    return experiment


@bp.post("")
def submit() -> tuple[Response, int, dict[str, str]]:
    """Validate a sweep spec, store its runs and the experiment, schedule the runs."""
    spec = served_spec(request.get_json(silent=True))
    if spec.sweep is None:
        raise SpecError("invalid sweep spec", [ErrorDetail("/sweep", "is required")])
    experiment, runs = new_experiment(spec, owner=current_user())
    ctx = context()
    store_experiment(ctx.store, experiment, runs)
    for run, _ in runs:
        ctx.submit(run)
    body = jsonify({"id": experiment.id, "runs": experiment.runs})
    return body, 201, {"Location": f"/api/v1/experiments/{experiment.id}"}


@bp.get("")
def list_experiments() -> Response:
    """The caller's experiments, newest first, with their points and runs."""
    found = context().store.list_experiments(owner=current_user())
    return jsonify({"experiments": [e.to_dict() for e in found]})


@bp.get("/<experiment_id>")
def get_experiment(experiment_id: str) -> Response:
    """The experiment's points, their runs' states and (once ended) summaries."""
    experiment = own_experiment(experiment_id)
    return jsonify(experiment_document(experiment, context().store, full=True))
