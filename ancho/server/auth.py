"""Bearer tokens: each request to the API names its user with ``Authorization``."""

from __future__ import annotations

from flask import current_app, g, request
from werkzeug.exceptions import Unauthorized

from .context import ServerContext


def context() -> ServerContext:
    """The server context of the running app."""
    ctx: ServerContext = current_app.extensions["ancho"]
    return ctx


def require_user() -> None:
    """``before_request`` hook: set ``g.user`` or answer 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer token: send Authorization: Bearer <token>")
    user = context().user_for_token(token.strip())
    if user is None:
        raise Unauthorized("invalid or revoked token")
    g.user = user.name


def current_user() -> str:
    """The authenticated user's name."""
    name: str = g.user
    return name
