"""``POST /api/v1/models``: upload a model tarball, get its ``sha256:`` source back."""

from __future__ import annotations

import hashlib

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge, UnsupportedMediaType

from ..errors import ErrorDetail, SpecError
from .auth import context, current_user, require_user

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")
bp.before_request(require_user)

GZIP_MAGIC = b"\x1f\x8b"


@bp.post("")
def upload() -> tuple[Response, int]:
    """Keep the body (a ``.tar.gz``) in the caller's store under its SHA-256."""
    if request.mimetype not in ("application/gzip", "application/x-gzip",
                                "application/octet-stream"):  # fmt: skip
        raise UnsupportedMediaType("send the model as a .tar.gz (Content-Type: application/gzip)")
    limit = context().max_upload_bytes
    if request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge(f"the model is larger than the limit of {limit:,} bytes")
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge(f"the model is larger than the limit of {limit:,} bytes")
    if not data.startswith(GZIP_MAGIC):
        raise SpecError("invalid model upload", [ErrorDetail("body", "is not a gzip file")])
    digest = hashlib.sha256(data).hexdigest()
    context().store.for_user(current_user()).put_model(digest, data)
    return jsonify({"source": f"sha256:{digest}", "bytes": len(data)}), 201
