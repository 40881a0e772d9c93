"""A model's ``requirements.txt``, installed once per machine into an environment cached
by the file's SHA-256.

The environment is a ``pip install --target`` folder under the executor's cache
(``ANCHO_CACHE_DIR/envs/<digest>``), put first on ``sys.path`` before the model is
imported. Concurrent executors take a file lock; the folder appears only complete
(installed beside it, then renamed), so a second run with the same requirements
installs nothing. A failed install is a :class:`~ancho.errors.ModelError` carrying
pip's own message, which fails the run.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .errors import ModelError

log = logging.getLogger("ancho.requirements")
PIP_TIMEOUT_S = 900


def install(requirements: Path, cache_dir: Path) -> Path:
    """The folder holding ``requirements`` installed (installing it the first time)."""
    try:
        content = requirements.read_bytes()
    except OSError as exc:
        raise ModelError(f"model.requirements: cannot read {requirements} ({exc})") from None
    # Keyed by the file and the interpreter: wheels built for one Python do not fit another.
    interpreter = f"{sys.implementation.cache_tag}-{platform.machine()}".encode()
    digest = hashlib.sha256(content + b"\0" + interpreter).hexdigest()[:24]
    envs = cache_dir / "envs"
    envs.mkdir(parents=True, exist_ok=True)
    target = envs / digest
    if target.is_dir():
        log.info("requirements %s: cached in %s", requirements.name, target)
        return target
    with (envs / f"{digest}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another executor may be installing the same
        if target.is_dir():
            return target
        partial = envs / f"{digest}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        started = time.monotonic()
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
               "--disable-pip-version-check", "--target", str(partial),
               "-r", str(requirements)]  # fmt: skip
        try:
            env = {"PIP_CACHE_DIR": str(cache_dir / "pip"), **os.environ}
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S,
                                  check=False, cwd=requirements.parent, env=env)  # fmt: skip
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelError(
                f"installing {requirements.name} took more than {PIP_TIMEOUT_S} s"
            ) from None
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            message = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
            raise ModelError(f"installing {requirements.name} failed: " + " | ".join(message))
        partial.rename(target)
        elapsed = time.monotonic() - started
        log.info("requirements %s: installed in %.1f s", requirements.name, elapsed)
    return target


def activate(folder: Path) -> None:
    """Put an installed requirements folder first on ``sys.path``."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
