"""One error handler: every failure is ``{"error", "details": [{"path", "message"}]}``."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from ..errors import AnchoError

log = logging.getLogger("ancho.server")


def install(app: Flask) -> None:
    """Register the handlers on ``app``."""

    @app.errorhandler(AnchoError)
    def ancho_error(exc: AnchoError) -> tuple[Response, int]:
        return jsonify(exc.to_dict()), exc.http_status

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        response = jsonify({"error": exc.description or exc.name, "details": []})
        if code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="ancho"'
        return response, code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        return jsonify({"error": f"internal error: {type(exc).__name__}", "details": []}), 500
