"""Sweeps: the points of an experiment (DESIGN.md, "Experiments").

A spec's ``"sweep"`` is one of

- ``{"grid": {name: [values…], …}}``: every combination, the first name varying
  slowest (``itertools.product`` order, names in the spec's order);
- ``{"points": [{name: value, …}, …]}``: these points, in this order;
- ``{"latin_hypercube": {"points": n, "ranges": {name: [lo, hi], …}, "seed": s}}``:
  ``n`` points, each range cut into ``n`` equal strata and every stratum used once per
  name, drawn from ``numpy.random.default_rng(s)`` (seed 0 when absent), so the same
  sweep always gives the same points.

Each point updates the spec's ``parameters``; a swept name must be one of them (a
typo would otherwise run the whole sweep at the default). Every run of an experiment
has the spec's seed: common random numbers across the points.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from .errors import ErrorDetail, SpecError

__all__ = ["MAX_POINTS", "expand_sweep"]

#: The most points one experiment may have.
MAX_POINTS = 10_000

Point = dict[str, Any]


def expand_sweep(sweep: dict[str, Any], parameters: dict[str, Any]) -> list[Point]:
    """The sweep's points (each a ``{name: value}`` update of ``parameters``), or a
    :class:`SpecError` naming every problem with its JSON path. ``sweep`` has passed
    the schema (one of the three forms, with the right types)."""
    details: list[ErrorDetail] = []
    if "grid" in sweep:
        points = _grid(sweep["grid"], details)
        names = {"/sweep/grid/" + _escape(n): n for n in sweep["grid"]}
    elif "points" in sweep:
        points = [dict(p) for p in sweep["points"]]
        names = {f"/sweep/points/{i}/{_escape(n)}": n
                 for i, p in enumerate(points) for n in p}  # fmt: skip
        if not points:
            details.append(ErrorDetail("/sweep/points", "must list at least one point"))
        if len(points) > MAX_POINTS:
            details.append(ErrorDetail("/sweep/points", f"has {len(points):,} points; at most"
                                                        f" {MAX_POINTS:,}"))  # fmt: skip
    else:
        lhs = sweep["latin_hypercube"]
        points = _latin_hypercube(lhs, details)
        names = {"/sweep/latin_hypercube/ranges/" + _escape(n): n for n in lhs["ranges"]}
    for path, name in names.items():
        if name not in parameters:
            known = ", ".join(sorted(parameters)) or "none"
            details.append(ErrorDetail(path, f"{name!r} is not one of the spec's parameters"
                                             f" ({known})"))  # fmt: skip
    if details:
        raise SpecError("invalid sweep", details)
    return points


def _grid(grid: dict[str, list[Any]], details: list[ErrorDetail]) -> list[Point]:
    if not grid:
        details.append(ErrorDetail("/sweep/grid", "must sweep at least one parameter"))
        return []
    for name, values in grid.items():
        if not values:
            where = "/sweep/grid/" + _escape(name)
            details.append(ErrorDetail(where, "must list at least one value"))
    count = math.prod(len(v) for v in grid.values())
    if count > MAX_POINTS:
        details.append(ErrorDetail("/sweep/grid", f"has {count:,} points; at most {MAX_POINTS:,}"))
    if details:
        return []
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def _latin_hypercube(lhs: dict[str, Any], details: list[ErrorDetail]) -> list[Point]:
    import numpy as np

    n, ranges = int(lhs["points"]), lhs["ranges"]
    if n > MAX_POINTS:
        details.append(ErrorDetail("/sweep/latin_hypercube/points", f"must be <= {MAX_POINTS:,}"))
    if not ranges:
        details.append(ErrorDetail("/sweep/latin_hypercube/ranges",
                                   "must give at least one parameter's range"))  # fmt: skip
    for name, (lo, hi) in ranges.items():
        if not lo < hi:
            details.append(ErrorDetail("/sweep/latin_hypercube/ranges/" + _escape(name),
                                       f"lo ({lo}) must be < hi ({hi})"))  # fmt: skip
    if details:
        return []
    rng = np.random.default_rng(int(lhs.get("seed", 0)))
    columns = {}
    for name, (lo, hi) in ranges.items():
        strata = rng.permutation(n) + rng.random(n)  # one draw in each of n strata
        columns[name] = lo + strata / n * (hi - lo)
    return [{name: float(col[i]) for name, col in columns.items()} for i in range(n)]


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
