"""``ancho-executor``: what Mesos launches for a run, in a container or a process."""

from __future__ import annotations

import logging
import sys

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
    from pymesos import MesosExecutorDriver  # imported late: it installs a SIGINT handler

    from .mesos import AnchoExecutor

    logging.getLogger("ancho.executor").info("starting: %s", config.describe())
    driver = MesosExecutorDriver(AnchoExecutor(config), use_addict=False)
    driver.run()


if __name__ == "__main__":
    main()
