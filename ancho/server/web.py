"""The web page at ``/`` (placeholder until the page lands)."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("web", __name__)


@bp.get("/")
def index() -> str:
    """The page."""
    return "<!doctype html><title>Ancho</title><p>Ancho server</p>"
