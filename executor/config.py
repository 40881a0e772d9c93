"""Executor configuration, built once from the environment and logged at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _float(name: str, default: float, low: float, high: float) -> float:
    raw = os.environ.get(name)
    value = float(raw) if raw else default
    return min(max(value, low), high)


@dataclass(slots=True, frozen=True)
class ExecutorConfig:
    """What an executor needs besides what Mesos tells it."""

    run_id: str
    #: The store URL, without credentials when ``ask_credential`` is set.
    store_url: str
    cache_dir: Path
    flush_rows: int = 5000
    flush_s: float = 0.5
    progress_s: float = 1.0
    idle_timeout_s: float = 60.0
    model_network: bool = False
    model_mem_mb: float | None = None
    #: The store's credential comes from the scheduler (framework messages), not the URL;
    #: asked every second for at most this long.
    ask_credential: bool = False
    credential_timeout_s: float = 60.0
    #: The agent's operator lets model code run when a sandbox mechanism is missing
    #: (ANCHO_SANDBOX_ALLOW_WEAKER=1 in the agent's executor environment); the run's
    #: log then says what was left out.
    sandbox_allow_weaker: bool = False
    sandbox_max_processes: int = 256
    sandbox_max_open_files: int = 1024
    sandbox_max_file_mb: int = 1024

    @classmethod
    def from_env(cls) -> ExecutorConfig:
        """Read ``ANCHO_*`` variables (set by the scheduler in the ExecutorInfo)."""
        env = os.environ
        cache = env.get("ANCHO_CACHE_DIR") or str(Path.home() / ".cache" / "ancho")
        return cls(
            run_id=env["ANCHO_RUN_ID"],
            store_url=env["ANCHO_STORE"],
            cache_dir=Path(cache),
            flush_rows=int(_float("ANCHO_FLUSH_ROWS", 5000, 1, 1_000_000)),
            flush_s=_float("ANCHO_FLUSH_S", 0.5, 0.01, 60),
            progress_s=_float("ANCHO_PROGRESS_S", 1.0, 0.05, 60),
            idle_timeout_s=_float("ANCHO_IDLE_TIMEOUT_S", 60.0, 1, 86400),
            model_network=env.get("ANCHO_MODEL_NETWORK", "none") == "host",
            model_mem_mb=float(mem) if (mem := env.get("ANCHO_MODEL_MEM_MB")) else None,
            ask_credential=env.get("ANCHO_STORE_CREDENTIAL") == "scheduler",
            credential_timeout_s=_float("ANCHO_CREDENTIAL_TIMEOUT_S", 60.0, 1, 3600),
            sandbox_allow_weaker=env.get("ANCHO_SANDBOX_ALLOW_WEAKER", "") in ("1", "true"),
            sandbox_max_processes=int(_float("ANCHO_SANDBOX_MAX_PROCESSES", 256, 16, 65536)),
            sandbox_max_open_files=int(_float("ANCHO_SANDBOX_MAX_OPEN_FILES", 1024, 64, 65536)),
            sandbox_max_file_mb=int(_float("ANCHO_SANDBOX_MAX_FILE_MB", 1024, 1, 1 << 20)),
        )

    def describe(self) -> str:
        """One line for the log (no credentials)."""
        store = self.store_url.split("@")[-1]
        return (
            f"run={self.run_id} store={store} cache={self.cache_dir} flush_rows={self.flush_rows}"
            f" flush_s={self.flush_s} progress_s={self.progress_s} idle={self.idle_timeout_s}"
            f" model_network={'host' if self.model_network else 'none'}"
            f" model_mem_mb={self.model_mem_mb}"
            f" sandbox_allow_weaker={self.sandbox_allow_weaker}"
        )
