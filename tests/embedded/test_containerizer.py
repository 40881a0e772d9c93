"""The process containerizer's end of a container: when the executor exits, whatever
it left in its process group dies with it, and the agent hears of it at once."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ancho.embedded.containerizer import ContainerSpec, ProcessContainerizer

from .conftest import pid_alive


def _spec(tmp_path: Path, script: str) -> ContainerSpec:
    return ContainerSpec(container_id="c1", directory=tmp_path,
                         command={"value": script, "shell": True}, container=None,
                         environment={"PATH": os.environ["PATH"]})  # fmt: skip


def test_an_executor_that_leaves_a_child_behind_ends_with_it_promptly(tmp_path: Path) -> None:
    # The child is orphaned to PID 1 when the shell exits; killed, it stays a zombie
    # until PID 1 reaps it, which some inits do once a second. That must not hold the
    # termination up: a zombie is already dead.
    container = ProcessContainerizer().launch(
        _spec(tmp_path, "sleep 60 & echo $! > child.pid; sleep 0.3; exit 3")
    )
    started = time.monotonic()
    status = container.wait()
    took = time.monotonic() - started
    child = int((tmp_path / "child.pid").read_text())
    assert status == 3 << 8
    assert not pid_alive(child)  # a zombie is dead, only not reaped yet
    assert took < 0.3 + 0.5, took
