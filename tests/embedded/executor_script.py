"""A tiny executor on unmodified pymesos, steered by each task's JSON ``data``.

modes: ``finish`` (RUNNING then FINISHED with ``result`` as data), ``run`` (RUNNING
until killed). RUNNING carries ``{"pid", "pgid", "env"}``, ``env`` being the executor's
whole environment. Framework messages are echoed back; every ACKNOWLEDGED is reported
as a message ``acked:<task id>``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from pymesos import Executor, MesosExecutorDriver, decode_data, encode_data


def _data(value: dict[str, Any]) -> str:
    return str(encode_data(json.dumps(value).encode()))


class AckReportingDriver(MesosExecutorDriver):  # type: ignore[misc]
    def on_acknowledged(self, event: dict[str, Any]) -> None:
        super().on_acknowledged(event)
        self.sendFrameworkMessage(encode_data(b"acked:" + event["task_id"]["value"].encode()))


class TestExecutor(Executor):  # type: ignore[misc]
    def launchTask(self, driver: Any, task: dict[str, Any]) -> None:
        spec = json.loads(decode_data(task["data"])) if task.get("data") else {}
        running = {"pid": os.getpid(), "pgid": os.getpgid(0), "env": dict(os.environ)}
        driver.sendStatusUpdate(
            {"task_id": task["task_id"], "state": "TASK_RUNNING", "data": _data(running)}
        )
        if spec.get("mode", "finish") == "finish":
            result = encode_data(spec.get("result", "").encode())
            driver.sendStatusUpdate(
                {"task_id": task["task_id"], "state": "TASK_FINISHED", "data": result}
            )

    def killTask(self, driver: Any, task_id: dict[str, Any]) -> None:
        driver.sendStatusUpdate({"task_id": task_id, "state": "TASK_KILLED"})

    def frameworkMessage(self, driver: Any, message: str) -> None:
        driver.sendFrameworkMessage(message)


if __name__ == "__main__":
    print("executor starting", os.getpid(), flush=True)
    print("executor stderr", file=sys.stderr, flush=True)
    AckReportingDriver(TestExecutor()).run()
