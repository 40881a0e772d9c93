"""``ancho-executor``: what Mesos launches for a run, in a container or a process."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

from .config import ExecutorConfig


def main() -> None:
    """Run the executor until the agent shuts it down or it goes idle."""
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = ExecutorConfig.from_env()
    except (KeyError, ValueError) as exc:
        sys.stderr.write(f"ancho-executor: missing or bad environment: {exc}\n")
        raise SystemExit(2) from None
    _temp_in_sandbox()
    from .sandbox import SandboxUnavailable, protect_executor

    try:
        protect_executor()  # model code (a child of ours) cannot read our memory
    except SandboxUnavailable as exc:
        logging.getLogger("ancho.executor").warning("%s", exc)
    from pymesos import MesosExecutorDriver  # imported late: it installs a SIGINT handler

    from .mesos import AnchoExecutor

    logging.getLogger("ancho.executor").info("starting: %s", config.describe())
    driver = MesosExecutorDriver(AnchoExecutor(config), use_addict=False)
    driver.run()


def _temp_in_sandbox() -> None:
    """Temporary files go to the sandbox: a container's root filesystem is read-only."""
    sandbox = os.environ.get("MESOS_SANDBOX")
    if sandbox and "TMPDIR" not in os.environ:
        tmp = os.path.join(sandbox, "tmp")
        os.makedirs(tmp, exist_ok=True)
        os.environ["TMPDIR"] = tmp
        tempfile.tempdir = None


if __name__ == "__main__":
    main()
