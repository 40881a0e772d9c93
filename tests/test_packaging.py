"""The distribution's split: a core that is all an executor runs, and extras for the
scheduler's side (``ancho/extras.py``). The executor image installs only the core."""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ancho import cli, extras
from ancho.store import open_store

REPO = Path(__file__).resolve().parent.parent
#: What no executor runs: Spark (and so a JVM), Flask, the Docker SDK, Arrow.
NOT_IN_CORE = {"docker", "flask", "pyarrow", "pyspark", "waitress"}


def _requirements(value: str) -> set[str]:
    lines = (line.split("#")[0].strip() for line in value.splitlines())
    return {re.split(r"[\s<>=!~;\[]", line)[0].lower() for line in lines if line}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    return config


def test_the_core_requirements_exclude_the_extras() -> None:
    config = _setup_cfg()
    core = _requirements(config["options"]["install_requires"])
    assert core & NOT_IN_CORE == set()
    assert {"boto3", "cassandra-driver", "numpy", "pymesos"} <= core  # s3 sources, stores
    declared = {
        name: _requirements(value)
        for name, value in config["options.extras_require"].items()
        if name not in ("test", "all")
    }
    # ancho/extras.py names the same modules as setup.cfg (import name = distribution).
    assert declared == {name: set(modules) for name, modules in extras.EXTRAS.items()}
    everything = _requirements(config["options.extras_require"]["all"])
    assert everything == set().union(*declared.values()) >= NOT_IN_CORE


def test_the_executor_and_the_cli_import_no_extra() -> None:
    # Every executor module, and what it uses of ancho, in a fresh interpreter.
    code = """
import json, pkgutil, sys, importlib
import executor
for m in pkgutil.iter_modules(executor.__path__, "executor."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
import ancho, ancho.cli, ancho.model, ancho.requirements, ancho.sources
import ancho.store.cassandra, ancho.store.sqlite
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, check=True)  # fmt: skip
    loaded = set(json.loads(proc.stdout))
    assert "executor" in loaded and "pymesos" in loaded
    assert loaded & (NOT_IN_CORE | {"py4j", "werkzeug", "jinja2"}) == set()


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    installed = extras._installed
    monkeypatch.setattr(extras, "_installed", lambda name: name not in modules and installed(name))


def test_a_command_without_its_extra_names_it_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _hide(monkeypatch, "flask", "pyspark")  # the server needs Spark only for custom summaries
    with pytest.raises(SystemExit) as exit_:
        cli.main(["server"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "ancho: error: `ancho server` needs Ancho's 'server' extra, which is not installed"
        " (missing: flask). Install with: pip install 'ancho[server]'\n"
    )


def _without_spark(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spark is neither installed, as the extras see it, nor importable at all."""
    _hide(monkeypatch, "pyspark")
    for name in [m for m in sys.modules if m == "pyspark" or m.startswith("pyspark.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyspark", None)  # `import pyspark` raises ImportError


def _run_without_spark(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, example: str
) -> tuple[object, str]:
    """``ancho run examples/EXAMPLE`` with Spark out of reach: its exit code, the store."""
    _without_spark(monkeypatch)
    url = f"sqlite:///{tmp_path / 'ancho.db'}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", str(REPO / "examples" / example), "--store", url, "--sequences", "10"])
    return exit_.value.code, url


def test_ancho_run_needs_no_spark_for_the_built_in_summary(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, url = _run_without_spark(monkeypatch, tmp_path, "pi")
    assert code == 0
    [run] = open_store(url).list_runs()
    assert (run.state, run.ok) == ("FINISHED", 10)
    assert "pi" in capsys.readouterr().out


def test_ancho_run_of_a_custom_summary_without_spark_stores_no_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, url = _run_without_spark(monkeypatch, tmp_path, "option")
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'ancho[spark]'" in err
    assert "A custom summary" in err and "Traceback" not in err
    assert open_store(url).list_runs() == []


def test_ancho_run_of_a_custom_summary_sweep_without_spark_stores_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    spec = json.loads((REPO / "examples" / "option" / "ancho.json").read_text())
    spec["model"]["source"] = str(REPO / "examples" / "option")
    spec["sweep"] = {"grid": {"strike": [100.0, 101.0]}}
    sweep = tmp_path / "sweep.json"
    sweep.write_text(json.dumps(spec))
    _without_spark(monkeypatch)
    url = f"sqlite:///{tmp_path / 'ancho.db'}"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["run", str(sweep), "--store", url, "--sequences", "10"])
    assert exit_.value.code == 2
    assert "pip install 'ancho[spark]'" in capsys.readouterr().err
    store = open_store(url)
    assert (store.list_runs(), store.list_experiments()) == ([], [])


@pytest.mark.slow
def test_the_executor_image_holds_the_core_only(executor_image: str) -> None:
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    proc = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "sh", executor_image, "-c",
         f'python -c "{probe}" {" ".join(sorted(NOT_IN_CORE))} boto3 cassandra;'
         " command -v java || echo no java"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert proc.stdout.splitlines() == ["['boto3', 'cassandra']", "no java"]
