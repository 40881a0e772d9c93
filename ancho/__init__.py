"""Ancho: run Python simulation models at scale on Mesos.

The public names a user or script needs; everything else is internal. They load on
first use, so ``import ancho`` (and any ``ancho.*`` module) stays light: the model's
sandboxed process imports Ancho's modules before numpy, which starts threads, and a
process with threads cannot enter a user namespace.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Client as Client
    from .api import Experiment as Experiment
    from .api import Run as Run
    from .api import compare as compare
    from .api import connect as connect
    from .api import run as run
    from .api import sweep as sweep
    from .errors import AnchoError as AnchoError
    from .errors import SpecError as SpecError
    from .results import SequenceResult as SequenceResult
    from .seeding import sequence_rng as sequence_rng
    from .spec import RunSpec as RunSpec
    from .spec import load_spec as load_spec
    from .store import open_store as open_store

__version__ = "0.1.0"

_PUBLIC = {
    "Client": "api",
    "Experiment": "api",
    "Run": "api",
    "compare": "api",
    "connect": "api",
    "run": "api",
    "sweep": "api",
    "AnchoError": "errors",
    "SpecError": "errors",
    "SequenceResult": "results",
    "sequence_rng": "seeding",
    "RunSpec": "spec",
    "load_spec": "spec",
    "open_store": "store",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'ancho' has no attribute {name!r}")
