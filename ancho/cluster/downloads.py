"""Downloads the development cluster needs (ZooKeeper's jars), fetched once and cached.

The cache is ``ANCHO_DOWNLOAD_CACHE`` if set; in a source checkout, its ignored
``.cache/`` folder (where ``make cassandra`` caches Cassandra's jars and Maven's local
repository too); otherwise ``~/.cache/ancho``. Jars come from Maven Central through
``mvn dependency:copy-dependencies`` on a generated POM, so their dependencies resolve
as Maven resolves them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import ClusterError

_CHECKOUT = Path(__file__).resolve().parents[2]

Coordinate = tuple[str, str, str]  # group, artifact, version


def cache_dir() -> Path:
    """Where downloads are kept."""
    configured = os.environ.get("ANCHO_DOWNLOAD_CACHE")
    if configured:
        return Path(configured)
    if (_CHECKOUT / ".git").exists() and (_CHECKOUT / "setup.cfg").is_file():
        return _CHECKOUT / ".cache"
    return Path.home() / ".cache" / "ancho"


def _pom(coordinates: list[Coordinate]) -> str:
    dependencies = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId>"
        f"<version>{v}</version></dependency>"
        for g, a, v in coordinates
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>ancho</groupId><artifactId>download</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{dependencies}</dependencies></project>\n"
    )


def maven_jars(name: str, coordinates: list[Coordinate]) -> Path:
    """The folder ``<cache>/<name>-<digest>/lib`` with the jars of ``coordinates``, fetched
    once (the digest of the POM: other coordinates fetch afresh)."""
    pom_text = _pom(coordinates)
    root = cache_dir() / f"{name}-{hashlib.sha256(pom_text.encode()).hexdigest()[:10]}"
    lib = root / "lib"
    done = root / ".complete"
    if done.exists():
        return lib
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch at a time; the others reuse it
        if done.exists():
            return lib
        mvn = shutil.which("mvn")
        if mvn is None:
            raise ClusterError(f"fetching {name} needs Maven (`mvn` is not on PATH)")
        pom = root / "pom.xml"
        pom.write_text(pom_text, "utf-8")
        shutil.rmtree(lib, ignore_errors=True)
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(pom), f"-Dmaven.repo.local={cache_dir() / 'm2'}",
             "dependency:copy-dependencies", f"-DoutputDirectory={lib}",
             "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            tail = (result.stdout + result.stderr).strip().splitlines()[-5:]
            raise ClusterError(f"fetching {name} from Maven Central failed: " + " ".join(tail))
        done.touch()
    return lib
