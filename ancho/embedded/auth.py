"""Framework authentication as a Mesos 1.11 master does it for HTTP schedulers.

``--authenticate_http_frameworks`` with the ``basic`` HTTP authenticator and
``--credentials``: every request to ``/api/v1/scheduler`` needs an ``Authorization:
Basic`` header naming a known principal and its secret, else 401 with a challenge for
the realm ``mesos-master-scheduler``. The credentials file is Mesos' JSON
``{"credentials": [{"principal": …, "secret": …}]}``; Mesos 1.11 no longer reads the
old plain-text ``principal secret`` lines, so neither does this module.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import stat
from collections.abc import Mapping
from pathlib import Path

__all__ = ["CHALLENGE", "CredentialsError", "authenticate", "load_credentials"]

logger = logging.getLogger("ancho.embedded.auth")

#: Mesos' DEFAULT_HTTP_FRAMEWORK_AUTHENTICATION_REALM (master/constants.hpp).
REALM = "mesos-master-scheduler"
#: The ``WWW-Authenticate`` value of a 401 from the scheduler endpoint.
CHALLENGE = f'Basic realm="{REALM}"'


class CredentialsError(ValueError):
    """A credentials file that cannot be read or is not Mesos' JSON format."""


def load_credentials(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a Mesos ``--credentials`` file: principal -> secret.

    An empty file is refused, as the Mesos master refuses to start with one; a file
    readable by others is accepted with a warning, as Mesos does.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
        mode = file.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"Failed to read credentials file '{file}': {exc}") from exc
    if mode & stat.S_IRWXO:
        logger.warning(
            "Permissions on credentials file '%s' are too open; it is recommended that"
            " your credentials file is NOT accessible by others",
            file,
        )
    if not text:
        raise CredentialsError(f"Credentials file '{file}' must contain at least one credential")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CredentialsError(
            f"Invalid json format in credentials file '{file}': {exc} (Mesos 1.11 reads"
            ' only {"credentials": [{"principal": ..., "secret": ...}]}; the plain-text'
            " 'principal secret' lines were dropped in 1.11)"
        ) from exc
    return _parse(data, file)


def _parse(data: object, file: Path) -> dict[str, str]:
    entries = data.get("credentials", []) if isinstance(data, dict) else None
    if isinstance(entries, dict):
        entries = [entries]  # a single object stands for a one-element list in Mesos' JSON
    if not isinstance(entries, list):
        raise CredentialsError(f"Failed to parse credentials in '{file}': expecting an object")
    credentials: dict[str, str] = {}
    for entry in entries:
        if entry is None:
            continue
        principal = entry.get("principal") if isinstance(entry, dict) else None
        secret = entry.get("secret") if isinstance(entry, dict) else None
        if not isinstance(principal, str):
            raise CredentialsError(
                f"Failed to parse credentials in '{file}': every credential needs a"
                " string 'principal'"
            )
        if secret is not None and not isinstance(secret, str):
            raise CredentialsError(
                f"Failed to parse credentials in '{file}': 'secret' of '{principal}'"
                " must be a string"
            )
        credentials[principal] = secret or ""
    return credentials


def authenticate(header: str | None, credentials: Mapping[str, str]) -> str | None:
    """The principal an ``Authorization`` header proves, or None (answer 401).

    As libprocess' basic authenticator: exactly ``Basic <base64>``, decoding to exactly
    one ``principal:secret`` pair (so neither may contain a colon) that is known.
    """
    if header is None:
        return None
    parts = header.split(" ")
    if len(parts) != 2 or parts[0] != "Basic":
        return None
    try:
        decoded = base64.b64decode(parts[1], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    pair = decoded.split(":")
    if len(pair) != 2:
        return None
    principal, secret = pair
    if principal not in credentials or credentials[principal] != secret:
        return None
    return principal
