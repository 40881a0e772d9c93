"""Sweeps (DESIGN.md, "Experiments"): the points of a grid, a list and a Latin hypercube,
the refusals with their JSON paths, and the point runs an experiment is made of."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from ancho.errors import SpecError
from ancho.experiments import experiment_state, new_experiment, point_specs
from ancho.spec import DEFAULT_PRIORITY, RunSpec, spec_from_data

BASE: dict[str, Any] = {
    "name": "option",
    "model": {"source": "/models/option", "entrypoint": "model:simulate"},
    "parameters": {"strike": 100, "sigma": 0.2, "steps": 16},
    "sequences": 100,
    "seed": 11,
}


def sweep(value: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    data["sweep"] = value
    return data


def errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        spec_from_data(data)
    return [(d.path, d.message) for d in info.value.details]


def test_a_grid_is_every_combination_the_first_name_slowest() -> None:
    s = spec_from_data(sweep({"grid": {"strike": [90, 110], "sigma": [0.1, 0.2, 0.3]}}))
    points = [p for p, _ in point_specs(s)]
    assert points == [
        {"strike": 90, "sigma": 0.1}, {"strike": 90, "sigma": 0.2}, {"strike": 90, "sigma": 0.3},
        {"strike": 110, "sigma": 0.1}, {"strike": 110, "sigma": 0.2},
        {"strike": 110, "sigma": 0.3},
    ]  # fmt: skip


def test_each_point_run_has_the_spec_seed_and_its_parameters_updated() -> None:
    s = spec_from_data(sweep({"points": [{"strike": 90}, {"strike": 120, "sigma": 0.3}]}))
    pairs = point_specs(s)
    assert [r.parameters for _, r in pairs] == [
        {"strike": 90, "sigma": 0.2, "steps": 16},
        {"strike": 120, "sigma": 0.3, "steps": 16},
    ]
    assert {r.seed for _, r in pairs} == {11}  # common random numbers
    assert [r.name for _, r in pairs] == ["option[0]", "option[1]"]
    assert all(r.sweep is None and r.sequences == 100 for _, r in pairs)


def test_an_experiment_holds_its_points_and_runs_in_order() -> None:
    s = spec_from_data(sweep({"grid": {"strike": [90, 100, 110]}}))
    experiment, runs = new_experiment(s, owner="ada")
    assert experiment.points == [{"strike": 90}, {"strike": 100}, {"strike": 110}]
    assert experiment.runs == [run.id for run, _ in runs]
    assert len(set(experiment.runs)) == 3
    assert [run.spec["parameters"]["strike"] for run, _ in runs] == [90, 100, 110]
    assert all(run.owner == "ada" and run.seed == 11 for run, _ in runs)
    assert "sweep" not in runs[0][0].spec and experiment.spec["sweep"] == s.sweep


def test_a_latin_hypercube_uses_every_stratum_once_per_parameter() -> None:
    n = 20
    ranges = {"strike": [80.0, 120.0], "sigma": [0.1, 0.4]}
    s = spec_from_data(sweep({"latin_hypercube": {"points": n, "ranges": ranges, "seed": 3}}))
    points = [p for p, _ in point_specs(s)]
    assert len(points) == n
    for name, (lo, hi) in ranges.items():
        values = np.array([p[name] for p in points])
        assert ((values >= lo) & (values < hi)).all()
        strata = np.floor((values - lo) / (hi - lo) * n).astype(int)
        assert sorted(strata) == list(range(n))
    # The same sweep gives the same points; another seed others.
    again = [p for p, _ in point_specs(spec_from_data(s.to_dict()))]
    assert again == points
    other = sweep({"latin_hypercube": {"points": n, "ranges": ranges, "seed": 4}})
    assert [p for p, _ in point_specs(spec_from_data(other))] != points


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"grid": {}}, [("/sweep/grid", "must sweep at least one parameter")]),
        ({"grid": {"strike": []}}, [("/sweep/grid/strike", "must list at least one value")]),
        ({"points": []}, [("/sweep/points", "must list at least one point")]),
        ({"grid": {"strik": [1, 2]}},
         [("/sweep/grid/strik", "'strik' is not one of the spec's parameters"
                                " (sigma, steps, strike)")]),
        ({"points": [{"strike": 1}, {"vol": 2}]},
         [("/sweep/points/1/vol", "'vol' is not one of the spec's parameters"
                                  " (sigma, steps, strike)")]),
        ({"latin_hypercube": {"points": 5, "ranges": {"sigma": [0.4, 0.4]}}},
         [("/sweep/latin_hypercube/ranges/sigma", "lo (0.4) must be < hi (0.4)")]),
        ({"latin_hypercube": {"points": 5, "ranges": {"sigma": [0.4]}}},
         [("/sweep/latin_hypercube/ranges/sigma", "must have 2 items")]),
        ({"latin_hypercube": {"points": 10_001, "ranges": {"sigma": [0.1, 0.4]}}},
         [("/sweep/latin_hypercube/points", "must be <= 10,000")]),
        ({"grid": {"strike": list(range(101)), "sigma": list(range(100))}},
         [("/sweep/grid", "has 10,100 points; at most 10,000")]),
        ({"points": [{}] * 10_001}, [("/sweep/points", "has 10,001 points; at most 10,000")]),
        ({}, [("/sweep", "must be one of grid, points, latin_hypercube")]),
        ({"grid": {"strike": [1]}, "points": [{}]},
         [("/sweep", "must be exactly one of grid, points, latin_hypercube")]),
        ({"grids": {}}, [("/sweep/grids", "unknown key")]),
    ],
    ids=["empty-grid", "empty-values", "no-points", "unknown-grid-name", "unknown-point-name",
         "lo-equals-hi", "one-bound", "hypercube-too-big", "grid-too-big", "points-too-many",
         "no-form", "two-forms", "unknown-form"],
)  # fmt: skip
def test_bad_sweeps_are_refused_with_their_json_paths(
    value: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert errors(sweep(value)) == expected


def test_priority_defaults_to_50_and_is_bounded() -> None:
    assert spec_from_data(BASE).priority == DEFAULT_PRIORITY == 50
    assert spec_from_data({**BASE, "priority": 90}).priority == 90
    assert RunSpec.from_dict(spec_from_data({**BASE, "priority": 0}).to_dict()).priority == 0
    assert errors({**BASE, "priority": 101}) == [("/priority", "must be <= 100")]
    assert errors({**BASE, "priority": -1}) == [("/priority", "must be >= 0")]


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["QUEUED", "QUEUED"], "QUEUED"),
        (["QUEUED", "RUNNING"], "RUNNING"),
        (["FINISHED", "QUEUED"], "RUNNING"),
        (["FINISHED", "FINISHED"], "FINISHED"),
        (["FINISHED", "KILLED"], "KILLED"),
        (["FAILED", "KILLED"], "FAILED"),
    ],
)
def test_an_experiment_state_follows_its_runs(states: list[str], expected: str) -> None:
    assert experiment_state(states) == expected
