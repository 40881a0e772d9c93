"""The model contract: find a model's source, import it, and call it safely.

A model is a directory (or a ``.tar.gz`` of one) with a Python module. ``simulate(params,
rng)`` computes one sequence and returns a flat mapping of output name to int, float or
bool; ``setup(params)`` (optional) runs once per executor process and its result is
passed as ``simulate(..., state=obj)``; ``summarize(df, params)`` (optional) runs in the
summary job.
"""

from __future__ import annotations

import importlib
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ModelError
from .results import OUTPUT_NAME, OutputValue, SequenceResult
from .seeding import Streams
from .sources import fetch

if TYPE_CHECKING:
    from .store import Store


# --- sources -----------------------------------------------------------------
def materialize(source: str, cache_dir: Path, store: Store | None = None) -> Path:
    """A local directory holding the model named by ``source``.

    Local directories are used in place; everything else (a ``.tar.gz`` path or
    ``file://`` URL, ``https://``, ``git+https://``, ``s3://``, ``sha256:``) is fetched
    once into ``cache_dir`` and cached by digest: see :mod:`ancho.sources`. ``store`` is
    needed for ``sha256:`` sources, which the store holds.
    """
    return fetch(source, cache_dir, store)


# --- loading -------------------------------------------------------------------
def resolve(model_dir: Path, entrypoint: str) -> Callable[..., Any]:
    """Import ``module:function`` from ``model_dir``."""
    module_name, _, func_name = entrypoint.partition(":")
    root = str(model_dir.resolve())
    if root in sys.path:
        sys.path.remove(root)
    sys.path.insert(0, root)
    _forget_other(module_name.partition(".")[0], root)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(
            f"model {entrypoint!r}: importing {module_name} from {root} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    func = getattr(module, func_name, None)
    if not callable(func):
        raise ModelError(f"model {entrypoint!r}: {module_name} has no function {func_name}")
    return func  # type: ignore[no-any-return]


def _forget_other(package: str, root: str) -> None:
    """Drop an imported ``package`` (and its submodules) that came from outside ``root``.

    Two models are often both ``model.py``: in one process (a notebook, a test session)
    the second must not silently get the first from ``sys.modules``.
    """
    loaded = sys.modules.get(package)
    if loaded is None:
        return
    origin = getattr(loaded, "__file__", None)
    if origin is not None and Path(origin).resolve().is_relative_to(root):
        return
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[name]


@dataclass(slots=True)
class LoadedModel:
    """A model imported in this process, with its ``setup`` state."""

    simulate: Callable[..., Any]
    params: dict[str, Any]
    state: Any = None
    has_state: bool = False

    @classmethod
    def load(
        cls, model_dir: Path, entrypoint: str, params: Mapping[str, Any], setup: str | None = None
    ) -> LoadedModel:
        """Import the model and call ``setup(params)`` once if named."""
        params = dict(params)
        simulate = resolve(model_dir, entrypoint)
        if setup is None:
            return cls(simulate, params)
        setup_fn = resolve(model_dir, setup)
        try:
            state = setup_fn(params)
        except Exception as exc:
            raise ModelError(f"model setup {setup!r} raised {type(exc).__name__}: {exc}") from exc
        return cls(simulate, params, state, True)


# --- running -------------------------------------------------------------------
class OutputError(Exception):
    """A sequence returned something that is not a flat mapping of valid outputs."""


class OutputNames:
    """The run's output names: the first sequence sets them, every later one must match.

    ``register`` records the names of this process' first sequence with the run and
    returns the run's names (another executor may have recorded them first). Checking is
    a tuple comparison in the common case, so it costs nothing per sequence.
    """

    def __init__(
        self,
        names: list[str] | None = None,
        register: Callable[[list[str]], list[str]] | None = None,
    ) -> None:
        self.names = names
        self._register = register
        self._seen: tuple[str, ...] | None = None

    def check(self, value: Any) -> dict[str, OutputValue]:
        """Validate one sequence's mapping; convert numpy scalars to Python ones."""
        if not isinstance(value, Mapping):
            raise OutputError(f"simulate must return a dict, got {type(value).__name__}")
        keys = tuple(value)
        if keys != self._seen:
            for name in keys:
                if not isinstance(name, str) or not OUTPUT_NAME.match(name):
                    raise OutputError(
                        f"output name {name!r} must match [A-Za-z_][A-Za-z0-9_]{{0,47}}"
                    )
            if self.names is None:
                found = list(keys)
                self.names = self._register(found) if self._register else found
            if set(keys) != set(self.names):
                raise OutputError(
                    f"outputs {sorted(keys)} differ from the run's outputs {sorted(self.names)}"
                )
            self._seen = keys
        out: dict[str, OutputValue] = {}
        for name, v in value.items():
            out[name] = v if type(v) in _PLAIN else _scalar(name, v)
        return out


_PLAIN = (float, int, bool)


def _scalar(name: str, v: Any) -> OutputValue:
    if isinstance(v, bool | int | float) and not isinstance(v, np.generic):
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.ndarray) and v.shape == ():
        return _scalar(name, v.item())
    raise OutputError(f"output {name!r} must be an int, float or bool, got {type(v).__name__}")


def run_sequences(
    model: LoadedModel,
    seed: int,
    start: int,
    stop: int,
    attempt: int,
    names: OutputNames | None = None,
) -> Iterator[SequenceResult]:
    """Run sequences ``start..stop-1``; a sequence that raises is yielded as failed."""
    check = (names or OutputNames()).check
    simulate = model.simulate
    params = model.params
    clock = time.perf_counter
    for i, rng in zip(range(start, stop), Streams(seed).generators(start, stop), strict=True):
        t0 = clock()
        try:
            if model.has_state:
                raw = simulate(params, rng, state=model.state)
            else:
                raw = simulate(params, rng)
            outputs = check(raw)
        except Exception as exc:
            yield SequenceResult(
                sequence=i,
                status="failed",
                outputs={},
                error={
                    "type": type(exc).__name__,
                    "message": str(exc),
                    "traceback": traceback.format_exc(),
                },
                attempt=attempt,
                duration_s=clock() - t0,
            )
            continue
        yield SequenceResult(i, "ok", outputs, None, attempt, clock() - t0)
