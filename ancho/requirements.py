"""A model's ``requirements.txt``, installed once per machine into an environment cached
by the file's SHA-256, by a pip confined as user code.

The environment is a ``pip install --target`` folder under the executor's cache
(``ANCHO_CACHE_DIR/envs/<digest>``), put first on ``sys.path`` before the model is
imported. Concurrent executors take a file lock; the folder appears only complete
(installed beside it, then renamed), so a second run with the same requirements
installs nothing. A failed install is a :class:`~ancho.errors.ModelError` carrying
pip's own message, which fails the run.

pip runs package build code (``setup.py``, build backends), which is the model
author's code, so it runs inside the sandbox (:mod:`ancho.confined`):

* it reads the system's paths (:func:`ancho.sandbox.system_read_paths`), the
  requirements file's folder, the host's resolver files (``/etc/hosts``,
  ``/etc/resolv.conf``, ``/etc/nsswitch.conf``, ``/etc/host.conf``, ``/etc/gai.conf``),
  the distribution's release files (``/etc/*release``, ``/etc/*_version``: pip names the
  system in its User-Agent),
  pip's global and ``PIP_CONFIG_FILE`` configuration, and the certificate files and
  local ``find-links`` folders that configuration or the environment names;
* it writes only the partial target folder and a private work folder
  (``envs/<digest>.work``: its ``HOME``, ``TMPDIR`` — where build isolation installs
  the build requirements — and pip's cache). The cache is the install's own, not shared
  with other installs: a build could otherwise plant a wheel or a cached download that
  another run's install would pick up;
* TCP ``connect`` reaches only the port of the configured package index (``index-url``,
  ``extra-index-url`` and ``find-links`` URLs from pip's configuration files and
  ``PIP_*`` variables; default ``https://pypi.org/simple``, port 443), or the port of
  the proxy configured for it (``proxy`` / ``HTTPS_PROXY`` / ``HTTP_PROXY``, honouring
  ``NO_PROXY``). Landlock filters by port, not by host: a build can reach any host on
  that port (443 is most of the internet) — but none of the machine's services on other
  ports (Cassandra, ZooKeeper, the Mesos agent, Ancho's API). An index named inside
  ``requirements.txt`` (``-i``) opens no port;
* its environment is ``PATH``, the locale, pip's own ``PIP_*`` settings, proxy and
  certificate-bundle variables: no store URL, token, Mesos or AWS variable. The user's
  own pip configuration files are copied into the private ``HOME``, where pip looks.
"""

from __future__ import annotations

import configparser
import fcntl
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from .confined import (
    ALLOW_WEAKER,
    EXIT_SANDBOX_UNAVAILABLE,
    UNAVAILABLE_PREFIX,
    WEAKER_PREFIX,
    Confinement,
    weaker_allowed,
)
from .errors import ModelError

log = logging.getLogger("ancho.requirements")
PIP_TIMEOUT_S = 900
DEFAULT_INDEX = "https://pypi.org/simple"

#: What a name resolution reads besides the system's libraries.
_RESOLVER_FILES = ("/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf",
                   "/etc/gai.conf")  # fmt: skip
#: What pip reads to name the system in its User-Agent (through its copy of ``distro``).
_DISTRO_GLOBS = ("*release", "*_version")
#: Variables pip, its TLS and its proxies read, passed through as they are.
_PASSED = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "SSL_CERT_FILE", "SSL_CERT_DIR",
           "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SOURCE_DATE_EPOCH")  # fmt: skip
_PROXY_NAMES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
#: ``PIP_*`` settings that would move pip's writes (or its log) out of the sandbox's folders.
_PIP_DROPPED = {"PIP_CACHE_DIR", "PIP_TARGET", "PIP_PREFIX", "PIP_ROOT", "PIP_USER", "PIP_SRC",
                "PIP_LOG", "PIP_LOG_FILE", "PIP_CONFIG_FILE"}  # fmt: skip
_DEFAULT_PORTS = {"http": 80, "https": 443}


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
        work = envs / f"{digest}.work"
        for folder in (partial, work):
            shutil.rmtree(folder, ignore_errors=True)
        started = time.monotonic()
        try:
            proc = _run_pip(requirements.resolve(), partial, work)
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelError(
                f"installing {requirements.name} took more than {PIP_TIMEOUT_S} s"
            ) from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for line in proc.stderr.splitlines():
            if line.startswith(WEAKER_PREFIX):
                log.warning("requirements %s: %s", requirements.name, line)
        if proc.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            if proc.returncode == EXIT_SANDBOX_UNAVAILABLE and UNAVAILABLE_PREFIX in proc.stderr:
                reason = proc.stderr.split(UNAVAILABLE_PREFIX, 1)[1].strip().splitlines()[0]
                raise ModelError(
                    f"installing {requirements.name}: the sandbox is unavailable ({reason});"
                    f" an operator may allow a weaker one with {ALLOW_WEAKER}=1"
                )
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


def _run_pip(requirements: Path, partial: Path, work: Path) -> subprocess.CompletedProcess[str]:
    """Run ``pip install --target partial -r requirements`` in the sandbox."""
    home, tmp, cache = work / "home", work / "tmp", work / "cache"
    for folder in (partial, home, tmp, cache):
        folder.mkdir(parents=True)
    environ = dict(os.environ)
    settings = pip_settings(environ)
    copy_user_config(environ, home)
    confinement = Confinement(
        read=[str(p) for p in pip_read_paths(requirements, settings, environ)],
        # Each folder by name: a root caller's sandbox gets each one handed to its uid.
        write=[str(p) for p in (partial, home, tmp, cache)],
        sockets=True,
        connect_ports=index_ports(settings, environ),
        # A big wheel (a GPU framework's) is a few GB; builds start compilers and make -j.
        file_size_mb=16384,
        processes=512,
    )
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
           "--disable-pip-version-check", "--target", str(partial),
           "-r", str(requirements)]  # fmt: skip
    return subprocess.run(
        confinement.command(pip),
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_S,
        check=False,
        cwd=requirements.parent,
        env=pip_environment(environ, home=home, tmp=tmp, cache=cache),
        stdin=subprocess.DEVNULL,
    )


def pip_environment(environ: Mapping[str, str], *, home: Path, tmp: Path,
                    cache: Path) -> dict[str, str]:  # fmt: skip
    """The confined pip's whole environment: what pip needs and nothing else."""
    env = {k: environ[k] for k in _PASSED if k in environ}
    env.update((k, v) for k, v in environ.items() if k.lower() in _PROXY_NAMES)
    env.update((k, v) for k, v in environ.items() if k.startswith("PIP_") and k not in _PIP_DROPPED)
    if weaker_allowed(environ):
        env[ALLOW_WEAKER] = "1"  # read (and removed) by the launcher
    config_file = environ.get("PIP_CONFIG_FILE")
    if config_file:
        env["PIP_CONFIG_FILE"] = config_file
    env.setdefault("PATH", os.defpath)
    env.update(HOME=str(home), TMPDIR=str(tmp), PIP_CACHE_DIR=str(cache),
               PYTHONNOUSERSITE="1")  # fmt: skip
    return env


# --- pip's configuration, as pip reads it ----------------------------------------------
def _global_config_files(environ: Mapping[str, str]) -> list[Path]:
    dirs = environ.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    return [Path(d) / "pip" / "pip.conf" for d in dirs.split(os.pathsep) if d] + [
        Path("/etc/pip.conf")
    ]


def _user_config_files(environ: Mapping[str, str]) -> list[tuple[Path, str]]:
    """The user's pip configuration files, each with its place under a private ``HOME``."""
    home = Path(os.path.expanduser("~"))
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [(home / ".pip" / "pip.conf", ".pip/pip.conf"),
            (config_home / "pip" / "pip.conf", ".config/pip/pip.conf")]  # fmt: skip


def _config_files(environ: Mapping[str, str]) -> list[Path]:
    """pip's configuration files in its order: global, user, site, ``PIP_CONFIG_FILE``."""
    files = _global_config_files(environ)
    env_file = environ.get("PIP_CONFIG_FILE")
    if not (env_file and os.path.exists(env_file)):  # pip skips the user's files then
        files += [path for path, _ in _user_config_files(environ)]
    files.append(Path(sys.prefix) / "pip.conf")
    if env_file:
        files.append(Path(env_file))
    return files


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-").removeprefix("--")


def pip_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """pip's effective settings for ``pip install``: ``PIP_*`` variables over the
    ``[install]`` sections over the ``[global]`` sections of its configuration files."""
    sections: dict[str, dict[str, str]] = {"global": {}, "install": {}}
    for path in _config_files(environ):
        parser = configparser.RawConfigParser()
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, UnicodeDecodeError):
            continue  # pip itself will say what is wrong with it
        for section, values in sections.items():
            if parser.has_section(section):
                values.update((_normalise(k), v) for k, v in parser.items(section))
    settings = {**sections["global"], **sections["install"]}
    for key, value in environ.items():
        if key.startswith("PIP_"):
            settings[_normalise(key[4:])] = value
    return settings


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def index_urls(settings: Mapping[str, str]) -> list[str]:
    """The URLs pip may fetch packages from, as configured (not as requirements.txt says)."""
    urls = [] if _truthy(settings.get("no-index")) else [settings.get("index-url", DEFAULT_INDEX)]
    if not _truthy(settings.get("no-index")):
        urls += settings.get("extra-index-url", "").split()
    urls += [u for u in settings.get("find-links", "").split() if "://" in u]
    return [u for u in urls if urlsplit(u).scheme in _DEFAULT_PORTS]


def _port(url: str) -> int | None:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        return parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None


def _proxy_for(url: str, settings: Mapping[str, str], environ: Mapping[str, str]) -> str | None:
    if settings.get("proxy"):
        return settings["proxy"]  # pip's --proxy: every request, whatever the host
    scheme, host = urlsplit(url).scheme, urlsplit(url).hostname or ""

    def variable(name: str) -> str | None:
        return environ.get(name) or environ.get(name.upper())

    if _bypassed(host, variable("no_proxy") or ""):
        return None
    return variable(f"{scheme}_proxy") or variable("all_proxy")


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` sends requests to ``host`` direct (as requests reads it)."""
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        name = entry.rsplit(":", 1)[0] if entry.count(":") == 1 else entry
        if name == "*" or (name and (host == name.lstrip(".")
                                     or host.endswith("." + name.lstrip(".")))):  # fmt: skip
            return True
    return False


def index_ports(settings: Mapping[str, str], environ: Mapping[str, str]) -> list[int]:
    """The TCP ports the confined pip may connect to: its index's, or its proxy's."""
    ports: set[int] = set()
    for url in index_urls(settings):
        port = _port(_proxy_for(url, settings, environ) or url)
        if port is not None:
            ports.add(port)
    return sorted(ports)


def _local_paths(values: Iterable[str]) -> list[Path]:
    paths = []
    for value in values:
        if value.startswith("file://"):
            value = urlsplit(value).path
        if "://" not in value and value:
            paths.append(Path(value).expanduser())
    return paths


def pip_read_paths(requirements: Path, settings: Mapping[str, str],
                   environ: Mapping[str, str]) -> list[Path]:  # fmt: skip
    """What the confined pip reads besides the system's paths."""
    paths = [requirements.parent, *(Path(p) for p in _RESOLVER_FILES)]
    paths += sorted(p for pattern in _DISTRO_GLOBS for p in Path("/etc").glob(pattern))
    paths += _global_config_files(environ)
    if environ.get("PIP_CONFIG_FILE"):
        paths.append(Path(environ["PIP_CONFIG_FILE"]))
    paths += _local_paths(settings.get("find-links", "").split())
    named = [settings.get(k, "") for k in ("cert", "client-cert", "constraint")]
    named += [environ.get(k, "") for k in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
                                           "CURL_CA_BUNDLE")]  # fmt: skip
    paths += _local_paths(v for value in named for v in value.split())
    return [p for p in paths if p.exists()]


def copy_user_config(environ: Mapping[str, str], home: Path) -> None:
    """Copy the user's pip configuration into the private ``HOME``, where pip looks."""
    for path, relative in _user_config_files(environ):
        if path.is_file():
            destination = home / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
