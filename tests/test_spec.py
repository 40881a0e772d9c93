"""The run spec: JSON Schema rules with their JSON paths, flags, `-p`, files and seeds."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ancho.errors import SpecError
from ancho.seeding import MAX_SEED
from ancho.spec import (
    DEFAULT_ENTRYPOINT,
    DEFAULT_SEQUENCES,
    Overrides,
    RunSpec,
    load_spec,
    parse_param,
    resolve_source,
    schema,
    spec_from_data,
    validate,
)

# --- helpers -----------------------------------------------------------------------

MINIMAL: dict[str, Any] = {
    "model": {"source": "/models/pi", "entrypoint": "model:simulate"},
    "sequences": 10,
}

FULL: dict[str, Any] = {
    "name": "pi-demo",
    "model": {
        "source": "/models/pi",
        "entrypoint": "model:simulate",
        "setup": "model:setup",
        "summary": "model:summarize",
        "requirements": "requirements.txt",
    },
    "parameters": {"samples": 10000},
    "sequences": 100000,
    "seed": 42,
    "resources": {"cpus": 1.0, "mem_mb": 512, "max_executors": 8},
    "max_attempts": 3,
    "timeout_s": 3600,
    "executor": {"containerizer": "docker", "image": "ancho/executor:latest"},
}


def spec(**changes: Any) -> dict[str, Any]:
    """MINIMAL with top-level keys replaced; nested dicts are merged."""
    data = copy.deepcopy(MINIMAL)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key].update(value)
        else:
            data[key] = value
    return data


def errors_of(data: Any, overrides: Overrides | None = None) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        spec_from_data(data, overrides=overrides)
    return [(d.path, d.message) for d in info.value.details]


def paths_of(data: Any, overrides: Overrides | None = None) -> list[str]:
    return [p for p, _ in errors_of(data, overrides)]


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), "utf-8")
    return path


# --- the schema ----------------------------------------------------------------------


def test_shipped_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["additionalProperties"] is False


def test_design_example_is_valid_and_keeps_its_values() -> None:
    s = spec_from_data(FULL)
    assert s.name == "pi-demo" and s.sequences == 100000 and s.seed == 42
    assert s.model.setup == "model:setup" and s.model.summary == "model:summarize"
    assert s.resources.max_executors == 8 and s.executor.containerizer == "docker"
    assert s.parameters == {"samples": 10000} and s.timeout_s == 3600


def test_minimal_spec_gets_defaults() -> None:
    s = spec_from_data(MINIMAL)
    assert s.name == "pi"
    assert s.resources.cpus == 1.0 and s.resources.mem_mb == 512
    assert s.resources.max_executors is None
    assert s.max_attempts == 3 and s.timeout_s is None
    assert s.executor.containerizer == "process" and s.executor.network == "none"
    assert s.parameters == {}


def test_cpus_must_be_positive() -> None:
    assert errors_of(spec(resources={"cpus": 0})) == [("/resources/cpus", "must be > 0")]


def test_cpus_error_reads_as_path_and_message() -> None:
    with pytest.raises(SpecError) as info:
        spec_from_data(spec(resources={"cpus": -1}))
    assert "/resources/cpus: must be > 0" in str(info.value)
    assert info.value.to_dict()["details"] == [
        {"path": "/resources/cpus", "message": "must be > 0"}
    ]
    assert info.value.exit_code == 2 and info.value.http_status == 400


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sequences": 0}, ("/sequences", "must be >= 1")),
        ({"sequences": 10**12 + 1}, ("/sequences", "must be <= 1000000000000")),
        ({"resources": {"mem_mb": 31}}, ("/resources/mem_mb", "must be >= 32")),
        ({"resources": {"max_executors": 0}}, ("/resources/max_executors", "must be >= 1")),
        ({"resources": {"cpus": 1025}}, ("/resources/cpus", "must be <= 1024")),
        ({"timeout_s": 0}, ("/timeout_s", "must be > 0")),
        ({"name": ""}, ("/name", "must not be empty")),
    ],
)
def test_range_rules_name_their_path(changes: dict[str, Any], expected: tuple[str, str]) -> None:
    assert errors_of(spec(**changes)) == [expected]


@pytest.mark.parametrize(
    ("seed", "ok"), [(0, True), (MAX_SEED, True), (-1, False), (MAX_SEED + 1, False)]
)
def test_seed_range(seed: int, ok: bool) -> None:
    if ok:
        assert spec_from_data(spec(seed=seed)).seed == seed
    else:
        assert paths_of(spec(seed=seed)) == ["/seed"]


@pytest.mark.parametrize(("attempts", "ok"), [(1, True), (100, True), (0, False), (101, False)])
def test_max_attempts_range(attempts: int, ok: bool) -> None:
    if ok:
        assert spec_from_data(spec(max_attempts=attempts)).max_attempts == attempts
    else:
        assert paths_of(spec(max_attempts=attempts)) == ["/max_attempts"]


def test_model_source_is_required() -> None:
    data = spec()
    del data["model"]["source"]
    assert errors_of(data) == [("/model/source", "is required")]


def test_missing_top_level_keys_are_each_reported() -> None:
    assert sorted(paths_of({})) == ["/model", "/sequences"]


@pytest.mark.parametrize(
    "entry", ["model.simulate", "model:", ":simulate", "1model:f", "m:f-g", "m:f.g", "a..b:f"]
)
def test_entrypoint_must_look_like_module_function(entry: str) -> None:
    errs = errors_of(spec(model={"entrypoint": entry}))
    assert errs == [("/model/entrypoint", "must look like module:function (e.g. model:simulate)")]


@pytest.mark.parametrize("entry", ["model:simulate", "pkg.sub.mod:run_1", "_m:_f"])
def test_entrypoint_accepts_dotted_modules(entry: str) -> None:
    assert spec_from_data(spec(model={"entrypoint": entry})).model.entrypoint == entry


def test_setup_and_summary_use_the_entrypoint_pattern() -> None:
    data = spec(model={"setup": "bad", "summary": "also bad"})
    assert sorted(paths_of(data)) == ["/model/setup", "/model/summary"]


def test_unknown_top_level_key_is_named() -> None:
    assert errors_of(spec(colour="red")) == [("/colour", "unknown key")]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"model": {"extra": 1}}, "/model/extra"),
        ({"resources": {"gpus": 1}}, "/resources/gpus"),
        ({"executor": {"memory": 1}}, "/executor/memory"),
        ({"a/b~c": 1}, "/a~1b~0c"),
    ],
)
def test_unknown_nested_keys_are_named_with_their_path(changes: dict[str, Any], path: str) -> None:
    assert errors_of(spec(**changes)) == [(path, "unknown key")]


def test_parameters_may_hold_any_keys() -> None:
    params = {"a": 1, "nested": {"x": [1, 2]}, "s": "t"}
    assert spec_from_data(spec(parameters=params)).parameters == params


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"sequences": "10"}, ("/sequences", "must be of type integer, not string")),
        ({"sequences": True}, ("/sequences", "must be of type integer, not boolean")),
        ({"sequences": 1.5}, ("/sequences", "must be of type integer, not number")),
        ({"parameters": [1]}, ("/parameters", "must be of type object, not array")),
        ({"resources": "big"}, ("/resources", "must be of type object, not string")),
        ({"name": 5}, ("/name", "must be of type string, not integer")),
        ({"seed": None}, ("/seed", "must be of type integer, not null")),
        ({"resources": {"cpus": "2"}}, ("/resources/cpus", "must be of type number, not string")),
    ],
)
def test_wrong_types_name_path_and_types(
    changes: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert errors_of(spec(**changes)) == [expected]


def test_containerizer_enum() -> None:
    errs = errors_of(spec(executor={"containerizer": "k8s"}))
    assert errs == [("/executor/containerizer", 'must be one of "process", "docker"')]


def test_network_enum() -> None:
    errs = errors_of(spec(executor={"network": "bridge"}))
    assert errs == [("/executor/network", 'must be one of "none", "host"')]


def test_every_error_is_reported_at_once() -> None:
    data = {
        "model": {"entrypoint": "bad", "extra": 1},
        "sequences": 0,
        "seed": -1,
        "colour": "red",
        "resources": {"cpus": 0, "gpus": 2},
        "executor": {"containerizer": "k8s"},
        "max_attempts": 101,
    }
    assert sorted(paths_of(data)) == sorted(
        [
            "/colour",
            "/executor/containerizer",
            "/max_attempts",
            "/model/entrypoint",
            "/model/extra",
            "/model/source",
            "/resources/cpus",
            "/resources/gpus",
            "/seed",
            "/sequences",
        ]
    )


def test_spec_that_is_not_an_object_is_an_error() -> None:
    with pytest.raises(SpecError, match="must be a JSON object"):
        spec_from_data([MINIMAL])


def test_validate_rejects_root_type_with_root_path() -> None:
    with pytest.raises(SpecError) as info:
        validate("text")
    assert [d.path for d in info.value.details] == ["/"]


def test_integral_float_sequences_becomes_an_int_or_is_rejected() -> None:
    # JSON Schema counts 10.0 as an integer; a RunSpec must still hold an int.
    try:
        s = spec_from_data(spec(sequences=10.0))
    except SpecError as exc:
        assert [d.path for d in exc.details] == ["/sequences"]
    else:
        assert type(s.sequences) is int


# --- flags -------------------------------------------------------------------------------


def test_flags_override_spec_values() -> None:
    data = spec(
        sequences=10,
        seed=1,
        parameters={"samples": 5, "keep": "me"},
        resources={"max_executors": 8},
        executor={"containerizer": "docker"},
    )
    flags = Overrides(
        sequences=99, seed=7, params={"samples": 50}, executors=2, containerizer="process"
    )
    s = spec_from_data(data, overrides=flags)
    assert s.sequences == 99 and s.seed == 7
    assert s.parameters == {"samples": 50, "keep": "me"}
    assert s.resources.max_executors == 2
    assert s.executor.containerizer == "process"


def test_flags_create_missing_sections() -> None:
    s = spec_from_data(MINIMAL, overrides=Overrides(params={"n": 1}, executors=3))
    assert s.parameters == {"n": 1} and s.resources.max_executors == 3


def test_overrides_do_not_change_the_callers_dict() -> None:
    data = spec(sequences=10)
    spec_from_data(data, overrides=Overrides(sequences=20, params={"x": 1}))
    assert data == spec(sequences=10)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (Overrides(sequences=0), "/sequences (--sequences)"),
        (Overrides(seed=-3), "/seed (--seed)"),
        (Overrides(executors=0), "/resources/max_executors (--executors)"),
        (Overrides(containerizer="k8s"), "/executor/containerizer (--containerizer)"),
    ],
)
def test_errors_from_flags_name_the_flag(flags: Overrides, expected: str) -> None:
    assert paths_of(MINIMAL, flags) == [expected]


def test_error_in_spec_value_does_not_name_a_flag() -> None:
    assert paths_of(spec(sequences=0), Overrides(seed=3)) == ["/sequences"]


def test_param_flag_over_non_object_parameters_is_a_spec_error() -> None:
    assert paths_of(spec(parameters=[1]), Overrides(params={"n": 1})) == ["/parameters"]


@pytest.mark.parametrize(
    ("section", "flags"),
    [
        ("resources", Overrides(executors=2)),
        ("executor", Overrides(containerizer="docker")),
    ],
)
def test_flag_into_a_non_object_section_is_a_spec_error(section: str, flags: Overrides) -> None:
    # A wrong type in the file plus a flag must still give a SpecError, not a TypeError.
    data = spec(**{section: "oops"})
    assert f"/{section}" in " ".join(paths_of(data, flags))


# --- -p KEY=VALUE -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("samples=1000", "samples", 1000),
        ("rate=0.25", "rate", 0.25),
        ("xs=[1, 2, 3]", "xs", [1, 2, 3]),
        ("flag=true", "flag", True),
        ("nothing=null", "nothing", None),
        ('quoted="42"', "quoted", "42"),
        ("name=hello", "name", "hello"),
        ("empty=", "empty", ""),
        ("expr=a=b", "expr", "a=b"),
        ('obj={"a": 1}', "obj", {"a": 1}),
    ],
)
def test_parse_param_reads_json_when_it_parses(text: str, key: str, value: Any) -> None:
    k, v = parse_param(text)
    assert k == key and v == value and type(v) is type(value)


@pytest.mark.parametrize("text", ["KEY", "=5", ""])
def test_parse_param_without_key_and_equals_is_an_error(text: str) -> None:
    with pytest.raises(SpecError, match="expected KEY=VALUE") as info:
        parse_param(text)
    assert f"-p {text}" in str(info.value)


# --- files and folders ---------------------------------------------------------------------


def test_relative_source_resolves_against_the_spec_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = write_json(tmp_path / "specs" / "run.json", spec(model={"source": "../models/pi"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the spec's folder decides, not the working directory
    s = load_spec(spec_file)
    assert s.model.source == str((tmp_path / "models" / "pi").resolve())


def test_absolute_source_is_kept(tmp_path: Path) -> None:
    target = str(tmp_path / "abs" / "model")
    spec_file = write_json(tmp_path / "run.json", spec(model={"source": target}))
    assert load_spec(spec_file).model.source == target


@pytest.mark.parametrize(
    "source",
    [
        "https://example.org/m.tar.gz",
        "file:///tmp/m.tar.gz",
        "git+https://host/repo@v1",
        "s3://bucket/key",
        "sha256:" + "ab" * 32,
    ],
)
def test_remote_sources_pass_through_unresolved(source: str, tmp_path: Path) -> None:
    assert resolve_source(source, tmp_path) == source
    spec_file = write_json(tmp_path / "run.json", spec(model={"source": source}))
    assert load_spec(spec_file).model.source == source


def test_model_dir_without_spec_file_uses_defaults(tmp_path: Path) -> None:
    model = tmp_path / "mymodel"
    model.mkdir()
    s = load_spec(model)
    assert s.model.source == str(model.resolve())
    assert s.model.entrypoint == DEFAULT_ENTRYPOINT
    assert s.sequences == DEFAULT_SEQUENCES
    assert s.name == "mymodel"


def test_model_dir_without_spec_file_takes_flags(tmp_path: Path) -> None:
    s = load_spec(tmp_path, Overrides(sequences=5, seed=9, params={"n": 2}))
    assert (s.sequences, s.seed, s.parameters) == (5, 9, {"n": 2})


def test_model_dir_with_ancho_json_uses_it(tmp_path: Path) -> None:
    model = tmp_path / "pi"
    write_json(
        model / "ancho.json",
        {"model": {"source": ".", "entrypoint": "sim:run"}, "sequences": 77, "seed": 3},
    )
    s = load_spec(model)
    assert s.model.source == str(model.resolve())
    assert s.model.entrypoint == "sim:run" and s.sequences == 77 and s.seed == 3


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", "utf-8")
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(bad) in str(info.value) and "not valid JSON" in str(info.value)


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "latin.json"
    bad.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(SpecError, match="not valid JSON") as info:
        load_spec(bad)
    assert str(bad) in str(info.value)


def test_unreadable_file_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_json(tmp_path / "secret.json", MINIMAL)

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(path) in str(info.value) and "cannot read spec file" in str(info.value)


def test_missing_target_is_an_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(SpecError, match="no such model directory or spec file") as info:
        load_spec(missing)
    assert str(missing) in str(info.value)


def test_invalid_spec_file_errors_name_the_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "run.json", spec(sequences=0))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.message.startswith(str(path))
    assert [d.path for d in info.value.details] == ["/sequences"]


def test_spec_file_that_is_not_an_object_names_the_file(tmp_path: Path) -> None:
    path = write_json(tmp_path / "list.json", [1, 2])
    with pytest.raises(SpecError, match="must be a JSON object") as info:
        load_spec(path)
    assert str(path) in str(info.value)


# --- round trip and seeds ---------------------------------------------------------------------


@pytest.mark.parametrize("data", [MINIMAL, FULL], ids=["minimal", "full"])
def test_to_dict_validates_and_round_trips(data: dict[str, Any]) -> None:
    s = spec_from_data(data)
    out = s.to_dict()
    validate(out)
    assert json.loads(json.dumps(out)) == out
    assert RunSpec.from_dict(out) == s


def test_to_dict_writes_every_default_out() -> None:
    out = spec_from_data(MINIMAL).to_dict()
    assert out["resources"] == {"cpus": 1.0, "mem_mb": 512}
    assert out["executor"] == {
        "containerizer": "process", "image": "ancho/executor:latest", "network": "none",
    }  # fmt: skip
    assert out["max_attempts"] == 3 and "timeout_s" not in out
    assert "setup" not in out["model"]


def test_seed_is_drawn_when_absent() -> None:
    seeds = {spec_from_data(MINIMAL).seed for _ in range(5)}
    assert all(isinstance(s, int) and 0 <= s <= MAX_SEED for s in seeds)
    assert len(seeds) > 1
    validate(spec_from_data(MINIMAL).to_dict())


def test_seed_is_kept_when_given_even_zero() -> None:
    assert spec_from_data(spec(seed=42)).seed == 42
    assert spec_from_data(spec(seed=0)).seed == 0


def test_drawn_seed_is_recorded_in_to_dict() -> None:
    s = spec_from_data(MINIMAL)
    assert s.to_dict()["seed"] == s.seed
    assert RunSpec.from_dict(s.to_dict()).seed == s.seed


@pytest.mark.parametrize(
    ("source", "name"),
    [("/m/pi", "pi"), ("/m/pi/", "pi"), ("/m/pi.tar.gz", "pi"), ("file:///x/opt.tgz", "opt")],
)
def test_name_defaults_to_the_model_folder(source: str, name: str) -> None:
    assert spec_from_data(spec(model={"source": source})).name == name


def test_tiny_cpus_are_refused_and_long_names_shortened() -> None:
    assert errors_of(spec(resources={"cpus": 1e-300})) == [
        (
            "/resources/cpus",
            "must be >= 0.05 (an executor's share; Mesos counts cpus in thousandths)",
        )
    ]
    long_source = "/models/" + "m" * 300
    assert len(RunSpec.from_dict({"model": {"source": long_source, "entrypoint": "m:f"},
                                  "sequences": 1}).name) == 128  # fmt: skip
