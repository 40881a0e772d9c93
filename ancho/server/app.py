"""The Flask application: one blueprint per resource, one error handler."""

from __future__ import annotations

from flask import Flask

from . import errors, experiments, meta, models, runs, web
from .context import ServerContext


def create_app(context: ServerContext) -> Flask:
    """The WSGI app serving ``context``."""
    app = Flask("ancho.server")
    app.config["MAX_CONTENT_LENGTH"] = context.max_upload_bytes + 2**20  # bodies beyond: 413
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["ancho"] = context
    for bp in (runs.bp, experiments.bp, models.bp, meta.bp, web.bp):
        app.register_blueprint(bp)
    errors.install(app)
    return app
