"""``ancho server --principal P --secret-file F``: flag errors are one paragraph with
exit code 2, and the scheduler service authenticates to a master that requires it."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from ancho import cli
from ancho.embedded import EmbeddedCluster
from ancho.runner import executor_command
from ancho.store import open_store
from scheduler.framework import ExecutorLaunch
from scheduler.service import SchedulerService
from scheduler.summary_job import SummaryJob


def _server_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["server", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one paragraph
    return err


def test_unreadable_secret_file_names_flag_and_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-secret"
    err = _server_error(["--principal", "ancho", "--secret-file", str(missing)], capsys)
    assert "--secret-file" in err and str(missing) in err
    assert "No such file" in err


def test_flags_come_in_pairs_and_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "needs --secret-file" in _server_error(["--principal", "ancho"], capsys)
    secret = tmp_path / "secret"
    secret.write_text("pw\n")
    assert "needs --principal" in _server_error(["--secret-file", str(secret)], capsys)
    colon = tmp_path / "colon"
    colon.write_text("p:w\n")
    err = _server_error(["--principal", "ancho", "--secret-file", str(colon)], capsys)
    assert "':'" in err
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "empty" in _server_error(["--principal", "ancho", "--secret-file", str(empty)], capsys)
    monkeypatch.setenv("ANCHO_MESOS_PRINCIPAL", "ancho")
    monkeypatch.setenv("ANCHO_MESOS_SECRET_FILE", str(tmp_path / "gone"))
    err = _server_error([], capsys)
    assert "ANCHO_MESOS_SECRET_FILE" in err and str(tmp_path / "gone") in err


def test_scheduler_service_authenticates_with_principal_and_secret(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'ancho.db'}")
    launch = ExecutorLaunch(executor_command(), {"ANCHO_CACHE_DIR": str(tmp_path / "cache")},
                            lambda _rid: store.url)  # fmt: skip
    job = SummaryJob(store, work_dir=tmp_path)
    cluster = EmbeddedCluster(tmp_path / "mesos", cpus=1, credentials={"ancho": "pw"})
    master = cluster.start()
    try:
        service = SchedulerService(store, master, launch, job, principal="ancho", secret="pw")
        service.start(timeout_s=15)
        try:
            with urllib.request.urlopen(f"http://{master}/master/state", timeout=5) as response:
                frameworks = json.loads(response.read())["frameworks"]
            assert [f["principal"] for f in frameworks] == ["ancho"]
        finally:
            service.stop(failover=False)
    finally:
        cluster.stop()
        store.close()
