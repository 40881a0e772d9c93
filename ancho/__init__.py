"""Ancho: run Python simulation models at scale on Mesos.

The public names a user or script needs; everything else is internal.
"""

from __future__ import annotations

from .errors import AnchoError as AnchoError
from .errors import SpecError as SpecError
from .results import SequenceResult as SequenceResult
from .seeding import sequence_rng as sequence_rng
from .spec import RunSpec as RunSpec
from .spec import load_spec as load_spec
from .store import open_store as open_store

__version__ = "0.1.0"
