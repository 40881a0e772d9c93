"""The web page at ``/``, and the API routes only it needs: a histogram of an output and
the outputs' convergence.

The page is plain HTML, CSS and JavaScript served from this package (``templates/web/``,
``static/web/``; no build step, nothing fetched from elsewhere). It asks for an API token
(kept in the browser's ``localStorage``), lists the user's runs (``GET /api/v1/runs``,
refreshed every 2 s while one is active), and shows one run at ``#/runs/<id>``: its
state, counts and timestamps, its log lines, the summary table and a histogram of each
output drawn as inline SVG from ``GET /api/v1/runs/{id}/histogram``. The page talks only
to the API with ``Authorization: Bearer``, so it can do nothing the token cannot.

The page itself needs no token; its Content-Security-Policy allows scripts, styles and
requests to this server only, which keeps an injected string from running as code (the
script also writes every value from the API as text, never as HTML).

Histogram. ``GET /api/v1/runs/{id}/histogram?output=NAME&bins=N`` counts the finite
values of one output over the run's ok sequences (bools as 0/1, as the summary counts
them) in the bins of :mod:`ancho.histogram` (``N`` of them, 1..200, default 40, from
the smallest value to the largest; whole-number bins for integer outputs), which the
report draws too. It streams ``store.iter_results`` in chunks of
:data:`ancho.histogram.CHUNK` values (``stream_histogram``, which the Python API's
``Run`` uses too), so memory stays bounded whatever the run's size:

- when the run's summary holds a finite ``min`` and ``max`` of the output, one pass bins
  the values between them;
- otherwise (no summary yet: a run in progress or one that failed) a first pass finds
  the range and a second bins. So does a summary whose range misses a stored value
  (results rewritten after it was computed): the one-pass counts are then thrown away.

A pass reads every stored result of the run (with SQLite about 0.9 s per 200,000
sequences of the ``pi`` example), so the page asks only once a run has ended. Why not
numpy over all values at once: a run may hold many millions of sequences, and the
server serves many requests; streaming costs one more pass at most. The response::

    {"output": "pi", "bins": 40, "edges": [e0, …, e40], "counts": [c0, …, c39],
     "count": 3000, "skipped": 0}

``edges`` has one more item than ``counts``; bin ``i`` holds ``edges[i] <= v <
edges[i + 1]`` (the last one includes its right edge) and ``count = sum(counts)``.
``skipped`` counts ok sequences whose value is missing, NaN or infinite. With no finite
value ``edges`` and ``counts`` are empty; when all values are equal one bin spans the
value ± 0.5; integer outputs and ranges holding fewer distinct floats than ``N`` get
fewer bins (``bins`` says how many). Errors: a missing or unknown output
or ``bins`` outside 1..200 → 400 with a detail per parameter; another user's run or a
missing one → 404; no or a bad token → 401.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from flask import Blueprint, Response, jsonify, make_response, render_template, request

from ..errors import ErrorDetail, SpecError
from ..histogram import BINS, stream_histogram, summary_range
from .auth import context, require_user
from .runs import own_run

bp = Blueprint(
    "web",
    __name__,
    static_folder="static/web",
    static_url_path="/web/static",
    template_folder="templates",
)

#: The page's API route, under ``/api/v1/runs`` with a bearer token like the others.
api = Blueprint("web_api", __name__, url_prefix="/api/v1/runs")
api.before_request(require_user)

#: Bins a histogram may have, and how many it has when the query does not say.
MAX_BINS = 200
DEFAULT_BINS = BINS

#: Everything the page loads comes from this server; nothing runs inline.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)

FloatArray = npt.NDArray[np.float64]


@bp.get("/")
def index() -> Response:
    """The page (one HTML document; the views are switched by the URL's ``#`` part)."""
    response = make_response(render_template("web/index.html"))
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-cache"
    return response


@api.get("/<run_id>/histogram")
def get_histogram(run_id: str) -> Response:
    """Counts of one output's values in equal-width bins (see the module's docstring)."""
    run = own_run(run_id)
    details: list[ErrorDetail] = []
    bins = _bins(request.args.get("bins"), details)
    output = request.args.get("output", "")
    outputs = list(run.outputs or [])
    if not output:
        known = ", ".join(outputs) or "none yet"
        details.append(ErrorDetail("output", f"required: an output of the run ({known})"))
    elif output not in outputs:
        known = ", ".join(outputs) if outputs else "the run has recorded no outputs yet"
        details.append(ErrorDetail("output", f"no output {output!r} (outputs: {known})"))
    if details:
        raise SpecError("invalid query", details)
    store = context().store
    doc = stream_histogram(
        lambda stop: store.iter_results(run_id, 0, stop),
        output,
        bins,
        summary_range(store.get_summary(run_id), output),
    )
    return jsonify(doc)


@api.get("/<run_id>/convergence")
def get_convergence(run_id: str) -> Response:
    """Each output's mean and 95% band against sequences, over the prefix of sequences
    merged so far: ``{"outputs": {name: [[k, mean, lo, hi], ...]}}`` (lo and hi are null
    while there is no interval). It grows while the run goes; the last point of an ended
    run is its summary's mean."""
    run = own_run(run_id)
    series = (context().store.get_live(run_id) or {}).get("series") or {}
    names = [n for n in (run.outputs or []) if n in series] + sorted(
        n for n in series if n not in (run.outputs or [])
    )
    return jsonify({"outputs": {name: series[name] for name in names}})


bp.register_blueprint(api)


def _bins(raw: str | None, details: list[ErrorDetail]) -> int:
    if raw is None or raw == "":
        return DEFAULT_BINS
    try:
        bins = int(raw)
    except ValueError:
        bins = 0
    if not 1 <= bins <= MAX_BINS:
        details.append(ErrorDetail("bins", f"must be an integer from 1 to {MAX_BINS}"))
    return bins
