"""The model contract: sources, imports, output checks, failures and the seeding contract."""

from __future__ import annotations

import hashlib
import io
import itertools
import random
import struct
import sys
import tarfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ancho.errors import ModelError
from ancho.model import (
    LoadedModel,
    OutputError,
    OutputNames,
    materialize,
    resolve,
    run_sequences,
)
from ancho.results import SequenceResult

# --- helpers -----------------------------------------------------------------------

_names = itertools.count()


@pytest.fixture(autouse=True)
def _isolated_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """resolve() puts model folders on sys.path and imports modules: undo both."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name.startswith("ancho_test_model_"):
            del sys.modules[name]


def module_name() -> str:
    """A fresh module name per model so Python's import cache never mixes tests."""
    return f"ancho_test_model_{next(_names)}"


def write_model(folder: Path, code: str, module: str | None = None) -> str:
    """Write ``code`` as a module in ``folder``; return the module name."""
    module = module or module_name()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(code), "utf-8")
    return module


def make_tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def expected_rng(seed: int, index: int) -> np.random.Generator:
    """The contract's generator, written out as the design states it."""
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(index,)))


def draws(rng: np.random.Generator) -> dict[str, Any]:
    """A few draws of different kinds; raw words make the comparison bitwise."""
    return {
        "raw0": int(rng.bit_generator.random_raw()),
        "raw1": int(rng.bit_generator.random_raw()),
        "u": float(rng.random()),
        "n": float(rng.standard_normal()),
        "k": int(rng.integers(0, 2**62)),
    }


def bits(value: float) -> bytes:
    return struct.pack("<d", value)


def simulate_draws(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return draws(rng)


def simulate_with_state(
    params: dict[str, Any], rng: np.random.Generator, state: Any = None
) -> dict[str, Any]:
    return {"x": float(rng.normal(state["mu"], params["sigma"])), "n": state["n"]}


def outputs(model: LoadedModel, seed: int, start: int, stop: int) -> list[SequenceResult]:
    return list(run_sequences(model, seed, start, stop, attempt=1))


def same_outputs(a: list[SequenceResult], b: list[SequenceResult]) -> bool:
    def key(r: SequenceResult) -> list[tuple[int, str, str, bytes | int]]:
        return [
            (r.sequence, r.status, k, bits(v) if isinstance(v, float) else v)
            for k, v in r.outputs.items()
        ]

    return [key(r) for r in a] == [key(r) for r in b]


# --- materialize -----------------------------------------------------------------------


def test_directory_is_used_in_place(tmp_path: Path) -> None:
    model = tmp_path / "pi"
    model.mkdir()
    assert materialize(str(model), tmp_path / "cache") == model
    assert not (tmp_path / "cache").exists()


def test_file_url_directory_is_used_in_place(tmp_path: Path) -> None:
    assert materialize(f"file://{tmp_path}", tmp_path / "cache") == tmp_path


def test_tarball_is_unpacked_under_its_digest(tmp_path: Path) -> None:
    archive = make_tarball(tmp_path / "m.tar.gz", {"model.py": "X = 1\n", "data.txt": "d"})
    cache = tmp_path / "cache"
    folder = materialize(str(archive), cache)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert folder == cache / digest
    assert (folder / "model.py").read_text() == "X = 1\n"


def test_tarball_with_single_top_folder_resolves_into_it(tmp_path: Path) -> None:
    archive = make_tarball(
        tmp_path / "m.tgz", {"pi/model.py": "X = 1\n", "pi/requirements.txt": ""}
    )
    folder = materialize(f"file://{archive}", tmp_path / "cache")
    assert folder.name == "pi"
    assert (folder / "model.py").is_file()


def test_tarball_is_unpacked_once_and_reused(tmp_path: Path) -> None:
    archive = make_tarball(tmp_path / "m.tar.gz", {"pi/model.py": "X = 1\n"})
    cache = tmp_path / "cache"
    first = materialize(str(archive), cache)
    (first / "marker").write_text("still here")
    second = materialize(str(archive), cache)
    assert second == first
    assert (second / "marker").read_text() == "still here"
    entries = [p.name for p in cache.iterdir() if not p.name.startswith(".")]  # not .locks
    assert entries == [first.parent.name]


def test_different_tarballs_unpack_to_different_folders(tmp_path: Path) -> None:
    a = materialize(str(make_tarball(tmp_path / "a.tar.gz", {"m.py": "A"})), tmp_path / "c")
    b = materialize(str(make_tarball(tmp_path / "b.tar.gz", {"m.py": "B"})), tmp_path / "c")
    assert a != b and (a / "m.py").read_text() == "A" and (b / "m.py").read_text() == "B"


def test_missing_source_is_a_model_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ModelError, match="no such directory") as info:
        materialize(str(missing), tmp_path / "cache")
    assert str(missing) in str(info.value)


def test_plain_file_is_not_a_model(tmp_path: Path) -> None:
    plain = tmp_path / "model.py"
    plain.write_text("X = 1")
    with pytest.raises(ModelError):
        materialize(str(plain), tmp_path / "cache")


def test_corrupt_tarball_is_a_model_error_and_leaves_no_partial_folder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a gzip file at all")
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="cannot unpack"):
        materialize(str(bad), cache)
    assert [p.name for p in cache.iterdir()] == [".locks"]


@pytest.mark.parametrize(
    ("source", "message"),
    [("ftp://h/m.tar.gz", "unsupported scheme"), ("s3://b", "s3://bucket/key"),
     ("sha256:abcd", "64 hex digits"), ("git+ssh://h/r", r"git\+https://")],
)  # fmt: skip
def test_malformed_sources_are_a_model_error(source: str, message: str, tmp_path: Path) -> None:
    # Remote sources themselves are tested against real servers in test_sources.py.
    with pytest.raises(ModelError, match=message):
        materialize(source, tmp_path)


# --- resolve and load ------------------------------------------------------------------------


def test_resolve_imports_the_function(tmp_path: Path) -> None:
    mod = write_model(tmp_path, "def simulate(params, rng):\n    return {'x': 1}\n")
    func = resolve(tmp_path, f"{mod}:simulate")
    assert func({}, None) == {"x": 1}


def test_two_models_with_one_module_name_each_get_their_own(tmp_path: Path) -> None:
    mod = module_name()
    write_model(tmp_path / "a", "def simulate(params, rng):\n    return {'x': 1}\n", mod)
    write_model(tmp_path / "b", "def simulate(params, rng):\n    return {'x': 2}\n", mod)
    assert resolve(tmp_path / "a", f"{mod}:simulate")({}, None) == {"x": 1}
    assert resolve(tmp_path / "b", f"{mod}:simulate")({}, None) == {"x": 2}
    # The same folder again reuses the imported module rather than importing it anew.
    first = sys.modules[mod]
    resolve(tmp_path / "b", f"{mod}:simulate")
    assert sys.modules[mod] is first


def test_a_package_from_another_folder_is_replaced_with_its_submodules(tmp_path: Path) -> None:
    pkg = module_name()
    for folder, value in (("a", 1), ("b", 2)):
        (tmp_path / folder / pkg).mkdir(parents=True)
        (tmp_path / folder / pkg / "__init__.py").write_text("", "utf-8")
        (tmp_path / folder / pkg / "sim.py").write_text(
            f"def simulate(params, rng):\n    return {{'x': {value}}}\n", "utf-8"
        )
    assert resolve(tmp_path / "a", f"{pkg}.sim:simulate")({}, None) == {"x": 1}
    assert resolve(tmp_path / "b", f"{pkg}.sim:simulate")({}, None) == {"x": 2}


def test_resolve_missing_module_is_a_clear_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        resolve(tmp_path, "no_such_module_xyz:simulate")
    text = str(info.value)
    assert "no_such_module_xyz" in text and "ModuleNotFoundError" in text
    assert str(tmp_path.resolve()) in text


def test_resolve_module_failing_at_import_names_the_exception(tmp_path: Path) -> None:
    mod = write_model(tmp_path, "raise RuntimeError('boom at import')\n")
    with pytest.raises(ModelError, match="RuntimeError: boom at import"):
        resolve(tmp_path, f"{mod}:simulate")


def test_resolve_missing_function_is_a_clear_model_error(tmp_path: Path) -> None:
    mod = write_model(tmp_path, "def other(params, rng):\n    return {}\n")
    with pytest.raises(ModelError, match=f"{mod} has no function simulate"):
        resolve(tmp_path, f"{mod}:simulate")


def test_resolve_non_callable_attribute_is_a_model_error(tmp_path: Path) -> None:
    mod = write_model(tmp_path, "simulate = 42\n")
    with pytest.raises(ModelError, match="has no function simulate"):
        resolve(tmp_path, f"{mod}:simulate")


def test_load_calls_setup_once_and_keeps_its_state(tmp_path: Path) -> None:
    mod = write_model(
        tmp_path,
        """
        CALLS = []
        def setup(params):
            CALLS.append(params)
            return {"mu": params["mu"], "n": len(CALLS)}
        def simulate(params, rng, state=None):
            return {"x": state["mu"], "n": state["n"]}
        """,
    )
    model = LoadedModel.load(tmp_path, f"{mod}:simulate", {"mu": 2.5}, setup=f"{mod}:setup")
    assert model.has_state and model.state == {"mu": 2.5, "n": 1}
    results = outputs(model, 1, 0, 3)
    assert [r.outputs for r in results] == [{"x": 2.5, "n": 1}] * 3
    assert sys.modules[mod].CALLS == [{"mu": 2.5}]


def test_load_without_setup_has_no_state(tmp_path: Path) -> None:
    mod = write_model(tmp_path, "def simulate(params, rng):\n    return {'x': 1}\n")
    model = LoadedModel.load(tmp_path, f"{mod}:simulate", {"a": 1})
    assert not model.has_state and model.params == {"a": 1}


def test_setup_that_raises_is_a_model_error(tmp_path: Path) -> None:
    mod = write_model(
        tmp_path,
        "def setup(p):\n    raise KeyError('gone')\ndef simulate(p, rng):\n    return {}\n",
    )
    with pytest.raises(ModelError, match="KeyError"):
        LoadedModel.load(tmp_path, f"{mod}:simulate", {}, setup=f"{mod}:setup")


# --- output checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["1x", "a-b", "a b", "", "é", "x" * 49, "x\n"])
def test_bad_output_names_are_rejected(name: str) -> None:
    with pytest.raises(OutputError, match="must match"):
        OutputNames().check({name: 1.0})


def test_non_string_output_name_is_rejected() -> None:
    with pytest.raises(OutputError):
        OutputNames().check({5: 1.0})


@pytest.mark.parametrize("name", ["x", "_", "X_1", "a" * 48])
def test_good_output_names_are_accepted(name: str) -> None:
    assert OutputNames().check({name: 1.0}) == {name: 1.0}


@pytest.mark.parametrize("value", [[1.0], (1.0,), 1.0, None, "x"])
def test_non_dict_output_is_rejected(value: Any) -> None:
    with pytest.raises(OutputError, match="must return a dict"):
        OutputNames().check(value)


@pytest.mark.parametrize(
    "value", ["1.0", None, [1.0], {"a": 1}, 1 + 2j, np.array([1.0, 2.0]), b"x"]
)
def test_non_scalar_output_values_are_rejected(value: Any) -> None:
    with pytest.raises(OutputError, match="must be an int, float or bool"):
        OutputNames().check({"x": value})


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (np.float64(1.5), float, 1.5),
        (np.float32(0.5), float, 0.5),
        (np.int64(-7), int, -7),
        (np.uint8(200), int, 200),
        (np.bool_(True), bool, True),
        (np.array(2.25), float, 2.25),
        (np.array(3), int, 3),
    ],
)
def test_numpy_scalars_become_python_scalars(value: Any, kind: type, expected: Any) -> None:
    out = OutputNames().check({"x": value})
    assert type(out["x"]) is kind and out["x"] == expected


def test_plain_values_keep_their_types() -> None:
    out = OutputNames().check({"f": 1.0, "i": 2**70, "b": False, "nan": float("nan")})
    assert [type(v) for v in out.values()] == [float, int, bool, float]
    assert out["i"] == 2**70


def test_first_sequence_sets_the_names() -> None:
    names = OutputNames()
    names.check({"a": 1, "b": 2})
    assert names.names == ["a", "b"]
    assert names.check({"b": 3, "a": 4}) == {"b": 3, "a": 4}  # order does not matter
    with pytest.raises(OutputError, match="differ from the run's outputs"):
        names.check({"a": 1})
    with pytest.raises(OutputError, match="differ"):
        names.check({"a": 1, "b": 2, "c": 3})


def test_names_differing_from_the_runs_are_rejected() -> None:
    with pytest.raises(OutputError, match=r"\['y'\] differ from the run's outputs \['x'\]"):
        OutputNames(names=["x"]).check({"y": 1.0})


def test_register_is_called_once_and_the_runs_names_win() -> None:
    calls: list[list[str]] = []

    def register(found: list[str]) -> list[str]:
        calls.append(found)
        return ["x"]  # another executor recorded its names first

    names = OutputNames(register=register)
    with pytest.raises(OutputError):
        names.check({"y": 1.0})
    assert names.check({"x": 1.0}) == {"x": 1.0}
    assert names.check({"x": 2.0}) == {"x": 2.0}
    assert calls == [["y"]]


# --- run_sequences ------------------------------------------------------------------------


def failing_on(bad: int, value: Any) -> Any:
    """A simulate that raises (``value`` is an exception) or returns ``value`` on call
    number ``bad`` (0-based) and ``{"x": 1.0}`` otherwise."""
    calls = itertools.count()

    def simulate(params: dict[str, Any], rng: np.random.Generator) -> Any:
        if next(calls) == bad:
            if isinstance(value, Exception):
                raise value
            return value
        return {"x": 1.0}

    return simulate


def test_raising_sequence_is_failed_and_later_sequences_continue() -> None:
    model = LoadedModel(failing_on(2, ValueError("negative price")), {})
    results = list(run_sequences(model, 7, 10, 15, attempt=2))
    assert [r.sequence for r in results] == [10, 11, 12, 13, 14]
    assert [r.status for r in results] == ["ok", "ok", "failed", "ok", "ok"]
    bad = results[2]
    assert bad.outputs == {} and bad.error is not None
    assert bad.error["type"] == "ValueError"
    assert bad.error["message"] == "negative price"
    assert bad.error["traceback"].startswith("Traceback")
    assert "in simulate" in bad.error["traceback"]
    assert "ValueError: negative price" in bad.error["traceback"]
    assert all(r.attempt == 2 for r in results)
    assert all(r.duration_s >= 0 for r in results)
    assert all(r.error is None and r.outputs == {"x": 1.0} for r in results if r.status == "ok")


def test_invalid_output_fails_only_that_sequence() -> None:
    results = outputs(LoadedModel(failing_on(1, {"x": "text"}), {}), 1, 0, 3)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].error is not None and results[1].error["type"] == "OutputError"
    assert "'x'" in results[1].error["message"]


def test_changed_output_names_fail_only_that_sequence() -> None:
    results = outputs(LoadedModel(failing_on(1, {"y": 1.0}), {}), 1, 0, 3)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].error is not None and "differ" in results[1].error["message"]


def test_empty_range_yields_nothing() -> None:
    assert outputs(LoadedModel(simulate_draws, {}), 1, 5, 5) == []


# --- seeding contract ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 42, 2**32, 2**63 - 1])
@pytest.mark.parametrize("index", [0, 1, 7, 123_456, 10**12 - 1])
def test_rng_is_the_contracts_generator(seed: int, index: int) -> None:
    seen: list[np.random.Generator] = []

    def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        seen.append(rng)
        return draws(rng)

    (result,) = outputs(LoadedModel(simulate, {}), seed, index, index + 1)
    want = draws(expected_rng(seed, index))
    assert result.outputs["raw0"] == want["raw0"] and result.outputs["raw1"] == want["raw1"]
    assert bits(result.outputs["u"]) == bits(want["u"])
    assert bits(result.outputs["n"]) == bits(want["n"])
    assert result.outputs["k"] == want["k"]
    assert isinstance(seen[0].bit_generator, np.random.PCG64)


def test_each_sequence_gets_a_fresh_generator() -> None:
    seen: list[int] = []

    def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        seen.append(id(rng))
        return {"u": float(rng.random())}

    results = outputs(LoadedModel(simulate, {}), 5, 0, 3)
    assert len({r.outputs["u"] for r in results}) == 3
    assert [r.outputs["u"] for r in results] == [
        float(expected_rng(5, i).random()) for i in range(3)
    ]


def random_split(rng: random.Random, start: int, stop: int) -> list[tuple[int, int]]:
    cuts = sorted(rng.sample(range(start + 1, stop), k=rng.randint(0, min(8, stop - start - 1))))
    edges = [start, *cuts, stop]
    return list(itertools.pairwise(edges))


@pytest.mark.parametrize("trial", range(10))
def test_outputs_are_identical_however_the_range_is_split(trial: int) -> None:
    rnd = random.Random(trial)
    seed, n = rnd.randrange(2**63), rnd.randint(2, 60)
    model = LoadedModel(simulate_draws, {})
    whole = outputs(model, seed, 0, n)
    parts = random_split(rnd, 0, n)
    pieced = [r for a, b in parts for r in outputs(model, seed, a, b)]
    assert same_outputs(whole, pieced)
    # In any order, too (executors finish batches in any order).
    rnd.shuffle(parts)
    shuffled = sorted(
        (r for a, b in parts for r in outputs(model, seed, a, b)), key=lambda r: r.sequence
    )
    assert same_outputs(whole, shuffled)


def test_outputs_with_setup_state_are_identical_however_the_range_is_split() -> None:
    rnd = random.Random(99)
    model = LoadedModel(simulate_with_state, {"sigma": 0.5}, {"mu": 3.0, "n": 4}, True)
    whole = outputs(model, 2024, 0, 40)
    assert all(r.status == "ok" and r.outputs["n"] == 4 for r in whole)
    for _ in range(5):
        pieced = [r for a, b in random_split(rnd, 0, 40) for r in outputs(model, 2024, a, b)]
        assert same_outputs(whole, pieced)
    assert whole[3].outputs["x"] == float(expected_rng(2024, 3).normal(3.0, 0.5))


def test_different_seeds_give_different_streams() -> None:
    model = LoadedModel(simulate_draws, {})
    a, b = outputs(model, 1, 0, 5), outputs(model, 2, 0, 5)
    assert not same_outputs(a, b)
