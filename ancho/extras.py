"""Ancho's optional parts: what each ``pip install 'ancho[EXTRA]'`` adds, and the error
a command gives when the extra it needs is missing.

``pip install ancho`` is the core: the executor, the model API, the stores and the CLI's
queries of a store. The executor image installs only the core, so nothing an executor
imports may come from an extra (``tests/test_packaging.py`` checks both).
"""

from __future__ import annotations

import importlib.util

from .errors import AnchoError

#: The modules each extra of ``setup.cfg`` installs (their import names).
EXTRAS: dict[str, tuple[str, ...]] = {
    "server": ("docker", "flask", "waitress"),
    "spark": ("pyarrow", "pyspark"),
    "parquet": ("pyarrow",),
    "docker": ("docker",),
    "notebook": ("pandas", "pyarrow"),
}


class MissingExtra(AnchoError):
    """A command needs an optional part of Ancho that is not installed."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that are not installed (found without importing them)."""
    return [name for name in EXTRAS[extra] if not _installed(name)]


def _installed(name: str) -> bool:
    # A bare folder of that name on sys.path (this repository's docker/, when run from
    # its root) is a namespace package, with no origin: not the distribution.
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None


def require(extras: str | tuple[str, ...], needed_by: str, reason: str | None = None) -> None:
    """Raise :class:`MissingExtra` (exit code 2) unless every module of ``extras`` (one
    name or several) is installed. ``needed_by`` names what needs them (``"`ancho
    server`"``); ``reason``, a sentence, says why. Every missing extra is named at once."""
    wanted = (extras,) if isinstance(extras, str) else extras
    lacking = [e for e in wanted if missing_modules(e)]
    if not lacking:
        return
    modules = sorted({m for e in lacking for m in missing_modules(e)})
    names = " and ".join(repr(e) for e in lacking)
    which = "extras, which are" if len(lacking) > 1 else "extra, which is"
    why = f" {reason}" if reason else ""
    raise MissingExtra(
        f"{needed_by} needs Ancho's {names} {which} not installed (missing:"
        f" {', '.join(modules)}).{why} Install with: pip install 'ancho[{','.join(lacking)}]'"
    )
