"""The run spec: loading, flag overrides and validation against the shipped JSON Schema.

The schema file ``ancho/schema/run-spec.schema.json`` is the one definition of a valid
spec; this module only turns its verdicts into errors that name JSON paths, fills in
defaults, and resolves relative paths against the spec file's folder.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from . import sources
from .errors import ErrorDetail, SpecError
from .seeding import draw_seed
from .sweep_points import expand_sweep

#: Spec file looked for inside a model directory given to ``ancho run MODEL_DIR``.
MODEL_DIR_SPEC = "ancho.json"
#: Sequences of a bare model directory run with no spec file and no ``--sequences``.
DEFAULT_SEQUENCES = 1000
DEFAULT_ENTRYPOINT = "model:simulate"
#: A run's ``priority`` when its spec gives none.
DEFAULT_PRIORITY = 50


@cache
def schema() -> dict[str, Any]:
    """The run-spec JSON Schema shipped in the package."""
    text = resources.files("ancho").joinpath("schema/run-spec.schema.json").read_text("utf-8")
    result: dict[str, Any] = json.loads(text)
    return result


@dataclass(slots=True, frozen=True)
class ModelRef:
    """Where the model lives and which functions to call."""

    source: str
    entrypoint: str
    setup: str | None = None
    summary: str | None = None
    #: The requirements file; ``None``: the folder's ``requirements.txt`` if it has one.
    requirements: str | None = None
    #: ``"requirements": null`` in the spec: install nothing, even a requirements.txt.
    no_requirements: bool = False


@dataclass(slots=True, frozen=True)
class Resources:
    """What one executor gets, and how many executors a run may use at once."""

    cpus: float = 1.0
    mem_mb: int = 512
    max_executors: int | None = None


@dataclass(slots=True, frozen=True)
class ExecutorSpec:
    """How executors are contained."""

    containerizer: str = "process"
    image: str = "ancho/executor:latest"
    network: str = "none"


@dataclass(slots=True, frozen=True)
class RunSpec:
    """A validated run spec with defaults filled in and the seed drawn if absent."""

    name: str
    model: ModelRef
    sequences: int
    seed: int
    parameters: dict[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    max_attempts: int = 3
    timeout_s: float | None = None
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    #: ``{output: {"sem" | "ci95_halfwidth" | "rel_ci95": bound}}`` (DESIGN.md).
    targets: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Orders a user's own runs (0 to 100, higher first).
    priority: int = DEFAULT_PRIORITY
    #: An experiment's sweep (``ancho.sweep_points``); None for a single run.
    sweep: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON (every default written out), valid against the schema."""
        model = {k: v for k, v in _asdict(self.model).items() if v is not None}
        if model.pop("no_requirements"):
            model["requirements"] = None
        res = {k: v for k, v in _asdict(self.resources).items() if v is not None}
        out: dict[str, Any] = {
            "name": self.name,
            "model": model,
            "parameters": self.parameters,
            "sequences": self.sequences,
            "seed": self.seed,
            "resources": res,
            "max_attempts": self.max_attempts,
            "executor": _asdict(self.executor),
        }
        if self.timeout_s is not None:
            out["timeout_s"] = self.timeout_s
        if self.targets:
            out["targets"] = self.targets
        out["priority"] = self.priority
        if self.sweep is not None:
            out["sweep"] = self.sweep
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        """Validate ``data`` and build the spec (drawing a seed when none is given)."""
        validate(data)
        m = data["model"]
        res = data.get("resources", {})
        ex = data.get("executor", {})
        source = m["source"]
        return cls(
            name=data.get("name") or _default_name(source),
            model=ModelRef(
                source=source,
                entrypoint=m["entrypoint"],
                setup=m.get("setup"),
                summary=m.get("summary"),
                requirements=m.get("requirements"),
                no_requirements="requirements" in m and m["requirements"] is None,
            ),
            sequences=int(data["sequences"]),
            seed=int(data["seed"]) if "seed" in data else draw_seed(),
            parameters=dict(data.get("parameters", {})),
            resources=Resources(
                cpus=float(res.get("cpus", 1.0)),
                mem_mb=int(res.get("mem_mb", 512)),
                max_executors=_int_or_none(res.get("max_executors")),
            ),
            max_attempts=int(data.get("max_attempts", 3)),
            timeout_s=data.get("timeout_s"),
            executor=ExecutorSpec(
                containerizer=ex.get("containerizer", "process"),
                image=ex.get("image", "ancho/executor:latest"),
                network=ex.get("network", "none"),
            ),
            targets=_targets(data.get("targets", {})),
            priority=int(data.get("priority", DEFAULT_PRIORITY)),
            sweep=copy.deepcopy(data["sweep"]) if "sweep" in data else None,
        )


def _targets(data: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {output: {kind: float(bound) for kind, bound in target.items()}
            for output, target in data.items()}  # fmt: skip


def _int_or_none(value: Any) -> int | None:
    # JSON Schema counts 10.0 as an integer: keep Python ints downstream.
    return None if value is None else int(value)


def _asdict(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


def _default_name(source: str) -> str:
    tail = source.rstrip("/").rsplit("/", 1)[-1].split("#", 1)[0]
    for suffix in (".tar.gz", ".tgz"):
        tail = tail.removesuffix(suffix)
    return tail[:128] or "run"


#: The smallest ``resources.cpus``: the executor and its batch tasks each need a share.
MIN_CPUS = 0.05


def validate(data: Any) -> None:
    """Raise :class:`SpecError` listing every schema violation with its JSON path."""
    validator = jsonschema.Draft202012Validator(schema())
    details: list[ErrorDetail] = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        details.extend(d for d in _describe(err) if d not in details)
    model = data.get("model") if isinstance(data, dict) else None
    source = model.get("source") if isinstance(model, dict) else None
    if isinstance(source, str) and source and (problem := sources.check(source)):
        details.append(ErrorDetail("/model/source", problem))
    res = data.get("resources") if isinstance(data, dict) else None
    cpus = res.get("cpus") if isinstance(res, dict) else None
    if isinstance(cpus, int | float) and not isinstance(cpus, bool) and 0 < cpus < MIN_CPUS:
        details.append(ErrorDetail("/resources/cpus", f"must be >= {MIN_CPUS} (an executor's"
                                   " share; Mesos counts cpus in thousandths)"))  # fmt: skip
    sweep = data.get("sweep") if isinstance(data, dict) else None
    if isinstance(sweep, dict) and not any(d.path.startswith("/sweep") for d in details):
        params = data.get("parameters")
        try:
            expand_sweep(sweep, params if isinstance(params, dict) else {})
        except SpecError as exc:
            details.extend(exc.details)
    if details:
        raise SpecError("invalid run spec", details)


def _pointer(parts: Any) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _describe(err: jsonschema.ValidationError) -> list[ErrorDetail]:
    """Turn one jsonschema error into messages a person can act on."""
    path = list(err.absolute_path)
    kind = err.validator
    if kind == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        return [
            ErrorDetail(_pointer([*path, key]), "unknown key")
            for key in sorted(set(err.instance) - allowed)
        ]
    if kind == "required" and isinstance(err.instance, dict):
        missing = [k for k in err.validator_value if k not in err.instance]
        return [ErrorDetail(_pointer([*path, k]), "is required") for k in missing]
    where = _pointer(path) if path else "/"
    value = err.validator_value
    messages = {
        "type": f"must be of type {value}, not {_json_type(err.instance)}",
        "minimum": f"must be >= {value}",
        "maximum": f"must be <= {value}",
        "exclusiveMinimum": f"must be > {value}",
        "exclusiveMaximum": f"must be < {value}",
        "minLength": "must not be empty" if value == 1 else f"must have >= {value} characters",
        "maxLength": f"must have <= {value} characters",
        "enum": "must be one of " + ", ".join(map(json.dumps, value)) if kind == "enum" else "",
        "pattern": "must look like module:function (e.g. model:simulate)"
        if ":" in str(value)
        else f"{json.dumps(err.instance)} is not an output name (letters, digits, _)",
        "minProperties": "must be one of grid, points, latin_hypercube"
        if path == ["sweep"]
        else "must set at least one of sem, ci95_halfwidth, rel_ci95",
        "maxProperties": "must be exactly one of grid, points, latin_hypercube",
        "minItems": f"must have {value} items" if kind == "minItems" else "",
        "maxItems": f"must have {value} items" if kind == "maxItems" else "",
    }
    return [ErrorDetail(where, messages.get(str(kind), err.message))]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "array" if isinstance(value, list) else "object"


@dataclass(slots=True)
class Overrides:
    """Values given as flags; each wins over the spec file's value."""

    sequences: int | None = None
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    executors: int | None = None
    containerizer: str | None = None

    def apply(self, data: dict[str, Any]) -> dict[str, str]:
        """Write the flags into ``data``; return JSON path → flag, for error messages."""
        origin: dict[str, str] = {}
        if self.sequences is not None:
            data["sequences"] = self.sequences
            origin["/sequences"] = "--sequences"
        if self.seed is not None:
            data["seed"] = self.seed
            origin["/seed"] = "--seed"
        if self.params:
            params = data.setdefault("parameters", {})
            if isinstance(params, dict):
                params.update(self.params)
            for key in self.params:
                origin[_pointer(["parameters", key])] = f"-p {key}"
        if self.executors is not None:
            _section(data, "resources")["max_executors"] = self.executors
            origin["/resources/max_executors"] = "--executors"
        if self.containerizer is not None:
            _section(data, "executor")["containerizer"] = self.containerizer
            origin["/executor/containerizer"] = "--containerizer"
        return origin


def _section(data: dict[str, Any], key: str) -> dict[str, Any]:
    """The object at ``/key`` for a flag to write into; a non-object there is an error."""
    section = data.setdefault(key, {})
    if not isinstance(section, dict):
        raise SpecError("invalid run spec", [ErrorDetail(f"/{key}", "must be of type object")])
    return section


def parse_param(text: str) -> tuple[str, Any]:
    """Parse one ``-p KEY=VALUE``: the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SpecError(f"-p {text}: expected KEY=VALUE")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def load_spec(target: str | Path, overrides: Overrides | None = None) -> RunSpec:
    """Load ``ancho run MODEL_DIR|SPEC.json``: read, resolve paths, apply flags, validate.

    A model directory uses its ``ancho.json`` when it has one; otherwise the spec is
    ``model:simulate`` with :data:`DEFAULT_SEQUENCES` sequences.
    """
    path = Path(target)
    overrides = overrides or Overrides()
    if path.is_dir():
        spec_file = path / MODEL_DIR_SPEC
        if spec_file.is_file():
            data = _read_json(spec_file)
            base = spec_file.parent
        else:
            data = {
                "model": {"source": ".", "entrypoint": DEFAULT_ENTRYPOINT},
                "sequences": DEFAULT_SEQUENCES,
            }
            base = path
    elif path.is_file():
        data = _read_json(path)
        base = path.parent
    else:
        raise SpecError(f"{target}: no such model directory or spec file")
    return spec_from_data(data, base=base, overrides=overrides, where=str(target))


def spec_from_data(
    data: Any,
    *,
    base: Path | None = None,
    overrides: Overrides | None = None,
    where: str = "spec",
) -> RunSpec:
    """Validate a spec mapping, resolving relative local sources against ``base``."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: a run spec must be a JSON object")
    data = copy.deepcopy(data)
    origin = (overrides or Overrides()).apply(data)
    model = data.get("model")
    if base is not None and isinstance(model, dict) and isinstance(model.get("source"), str):
        model["source"] = resolve_source(model["source"], base)
    try:
        return RunSpec.from_dict(data)
    except SpecError as exc:
        details = [
            ErrorDetail(f"{d.path} ({origin[d.path]})" if d.path in origin else d.path, d.message)
            for d in exc.details
        ]
        raise SpecError(f"{where}: invalid run spec", details) from None


def resolve_source(source: str, base: Path) -> str:
    """Make a local model source absolute; URLs and digests pass through unchanged."""
    if "://" in source or source.startswith(("sha256:", "git+")):
        return source
    return str((base / source).resolve())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec file ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: not valid JSON ({exc})") from None
