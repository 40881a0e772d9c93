"""The ``ancho`` command line (see the CLI contract in DESIGN.md).

Exit codes: 0 the run finished; 1 it finished FAILED or KILLED; 2 bad input (spec,
flags, unreachable service) with a one-paragraph message and no traceback.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import update_wrapper
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .backend import Backend, resolve_backend
from .errors import AnchoError, SpecError
from .store import Store, open_store

if TYPE_CHECKING:
    from .client import Client
    from .spec import RunSpec

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class ParamType(click.ParamType):  # type: ignore[type-arg]
    """``-p KEY=VALUE``: the value is JSON when it parses (``samples=1000`` is an int)."""

    name = "KEY=VALUE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse one parameter or fail with the flag named."""
        from .spec import parse_param

        if isinstance(value, tuple):
            return value
        try:
            return parse_param(value)
        except SpecError as exc:
            self.fail(exc.message, param, ctx)


class QuotaType(click.ParamType):  # type: ignore[type-arg]
    """``--max-cpus``: a positive number of cpus, or ``none`` (no quota)."""

    name = "CPUS|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """A float, or None for ``none``."""
        if value is None or value == "none":
            return None
        try:
            cpus = float(value)
        except ValueError:
            cpus = math.nan
        if not cpus > 0 or math.isinf(cpus):
            self.fail(f"{value!r} is neither a positive number of cpus nor none", param, ctx)
        return cpus


class MasterType(click.ParamType):  # type: ignore[type-arg]
    """``--master``: ``embedded``, ``HOST:PORT`` or ``zk://HOST:PORT[,…]/PATH``."""

    name = "MASTER"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Check the form; the master itself is reached later."""
        text = str(value)
        if text == "embedded":
            return text
        if text.startswith("zk://"):
            return ZkType().convert(text, param, ctx)
        host, _, port = text.rpartition(":")
        if host and port.isdigit() and 0 < int(port) < 65536 and "/" not in text:
            return text
        self.fail(f"{text!r} is not embedded, HOST:PORT or zk://HOSTS/PATH", param, ctx)


class ZkType(click.ParamType):  # type: ignore[type-arg]
    """``--zk``: ``zk://HOST:PORT[,…]/PATH``."""

    name = "ZK_URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Check the form; ZooKeeper itself is reached later."""
        from .embedded.election import ZkUrl

        try:
            return str(ZkUrl.parse(str(value)))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _store(url: str | None) -> Store:
    return open_store(url)


STORE_HELP = "sqlite:///path/to.db or cassandra://… (default ./.ancho/ancho.db, or ANCHO_STORE)."
SERVER_HELP = "Go through an Ancho server (else ANCHO_SERVER or the config file, unless --store)."
store_option = click.option(
    "--store", "store_url", envvar="ANCHO_STORE", metavar="URL", help=STORE_HELP
)
server_option = click.option("--server", "server_flag", metavar="URL", help=SERVER_HELP)


@dataclass(slots=True)
class Invocation:
    """The group's context object: the ``--server``/``--store`` a query command was
    given, and the backend they name, resolved once (``ancho.backend``)."""

    server_flag: str | None = None
    store_url: str | None = None
    _backend: Backend | None = None

    def backend(self) -> Backend:
        """The server or store to query (resolved on first use, then kept)."""
        if self._backend is None:
            self._backend = resolve_backend(self.server_flag, self.store_url)
        return self._backend


def _remember(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        setattr(ctx.ensure_object(Invocation), name, value)

    return callback


def query_command(f: Callable[..., Any]) -> Callable[..., Any]:
    """A command that reads through the invocation's backend: it takes ``--store`` and
    ``--server`` and gets the backend as its first argument."""

    @click.pass_context
    def with_backend(ctx: click.Context, /, *args: Any, **kwargs: Any) -> Any:
        return ctx.invoke(f, ctx.ensure_object(Invocation).backend(), *args, **kwargs)

    update_wrapper(with_backend, f)
    options = [
        click.option("--store", envvar="ANCHO_STORE", metavar="URL", expose_value=False,
                     callback=_remember("store_url"), help=STORE_HELP),
        click.option("--server", metavar="URL", expose_value=False,
                     callback=_remember("server_flag"), help=SERVER_HELP),
    ]  # fmt: skip
    for option in options:
        with_backend = option(with_backend)
    return with_backend


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ancho")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Ancho runs Python simulation models at scale on Mesos."""
    ctx.ensure_object(Invocation)


@cli.command()
@click.argument("target", metavar="MODEL_DIR|SPEC.json")
@click.option("--sequences", type=click.IntRange(min=1), help="Number of sequences.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), help="Run seed.")
@click.option("-p", "params", multiple=True, type=ParamType(), help="Model parameter KEY=VALUE.")
@click.option("--executors", type=click.IntRange(min=1), help="At most this many executors.")
@store_option
@click.option("--containerizer", type=click.Choice(["process", "docker"]))
@click.option("--master", default="embedded", show_default=True, type=MasterType(),
              help="embedded, HOST:PORT or zk://HOSTS/mesos (e.g. ancho cluster's).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print exactly the summary JSON.")
def run(
    target: str,
    sequences: int | None,
    seed: int | None,
    params: tuple[tuple[str, Any], ...],
    executors: int | None,
    store_url: str | None,
    containerizer: str | None,
    master: str,
    as_json: bool,
) -> None:
    """Run a model on this machine (embedded cluster, SQLite, Spark local[*])."""
    from .output import summary_document, summary_table
    from .runner import run_local
    from .spec import Overrides, load_spec

    overrides = Overrides(sequences, seed, dict(params), executors, containerizer)
    spec = load_spec(target, overrides)
    store = _store(store_url)
    if spec.sweep is not None:
        _run_sweep(spec, store, master, as_json)

    def created(run: Any) -> None:
        stream = sys.stderr if as_json else sys.stdout
        stream.write(f"run {run.id}\n")
        stream.flush()

    work_dir = Path(".ancho")
    record = run_local(
        spec, store, work_dir=work_dir, on_created=created, progress=sys.stderr, master=master
    )
    doc = summary_document(record, store.get_summary(record.id))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        click.echo(summary_table(doc))
        if record.reason:
            click.echo(f"\n{record.state}: {record.reason}")
    sys.exit(EXIT_OK if record.state == "FINISHED" else EXIT_RUN_FAILED)


def _run_sweep(spec: RunSpec, store: Store, master: str, as_json: bool) -> NoReturn:
    """``ancho run SWEEP.json``: every point's run on one cluster, then the table."""
    from .experiments import experiment_document, experiment_table, new_experiment, store_experiment
    from .runner import require_extras, run_all

    require_extras(spec)
    experiment, runs = new_experiment(spec)
    store_experiment(store, experiment, runs)
    stream = sys.stderr if as_json else sys.stdout
    stream.write(f"experiment {experiment.id} ({len(runs)} points)\n")
    stream.flush()
    run_all(spec, store, experiment.runs, work_dir=Path(".ancho"), progress=sys.stderr,
            master=master)  # fmt: skip
    doc = experiment_document(experiment, store, full=True)
    if as_json:
        click.echo(json.dumps(experiment_document(experiment, store), indent=2))
    else:
        click.echo(experiment_table(doc))
    sys.exit(EXIT_OK if doc["state"] == "FINISHED" else EXIT_RUN_FAILED)


@cli.command()
@click.argument("target", metavar="MODEL_DIR|SPEC.json")
@server_option
@click.option("--sequences", type=click.IntRange(min=1), help="Number of sequences.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), help="Run seed.")
@click.option("-p", "params", multiple=True, type=ParamType(), help="Model parameter KEY=VALUE.")
@click.option("--executors", type=click.IntRange(min=1), help="At most this many executors.")
@click.option("--containerizer", type=click.Choice(["process", "docker"]))
@click.option("--wait", "wait_", is_flag=True, help="Show progress; exit with the run's code.")
def submit(
    target: str,
    server_flag: str | None,
    sequences: int | None,
    seed: int | None,
    params: tuple[tuple[str, Any], ...],
    executors: int | None,
    containerizer: str | None,
    wait_: bool,
) -> None:
    """Submit a run to an Ancho server (a local model folder is packed and uploaded)."""
    from .client import REMOTE_SOURCES, Client, server_url, wait
    from .spec import Overrides, load_spec

    url = server_url(server_flag)
    if url is None:
        raise AnchoError("no server: give --server URL, set ANCHO_SERVER, or write the config file")
    spec = load_spec(target, Overrides(sequences, seed, dict(params), executors, containerizer))
    client = Client.connect(url)
    data = spec.to_dict()
    if not spec.model.source.startswith(REMOTE_SOURCES):
        data["model"]["source"] = client.upload_model(
            Path(spec.model.source.removeprefix("file://"))
        )
    if spec.sweep is not None:
        _submit_sweep(client, data, wait_)
    run_id = client.submit(data)["id"]
    click.echo(f"run {run_id}")
    if not wait_:
        return
    record = wait(client, run_id, sys.stderr)
    if record.reason and record.state != "FINISHED":
        click.echo(f"{record.state}: {record.reason}", err=True)
    sys.exit(EXIT_OK if record.state == "FINISHED" else EXIT_RUN_FAILED)


def _submit_sweep(client: Client, data: dict[str, Any], wait_: bool) -> NoReturn:
    """``ancho submit SWEEP.json``: the experiment's id; with --wait, its table."""
    from .client import wait_experiment
    from .experiments import experiment_table

    submitted = client.submit_experiment(data)
    click.echo(f"experiment {submitted['id']} ({len(submitted['runs'])} points)")
    if not wait_:
        sys.exit(EXIT_OK)
    wait_experiment(client, submitted["runs"], sys.stderr)
    doc = client.experiment(submitted["id"])
    click.echo(experiment_table(doc))
    sys.exit(EXIT_OK if doc["state"] == "FINISHED" else EXIT_RUN_FAILED)


@cli.command()
@click.option("--master", default="embedded", show_default=True, type=MasterType(),
              help="embedded, HOST:PORT or zk://HOSTS/mesos.")  # fmt: skip
@store_option
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to serve.")
@click.option("--principal", envvar="ANCHO_MESOS_PRINCIPAL", metavar="P",
              help="Authenticate to Mesos as P (or ANCHO_MESOS_PRINCIPAL).")  # fmt: skip
@click.option("--secret-file", envvar="ANCHO_MESOS_SECRET_FILE", metavar="F",
              help="File holding P's Mesos secret (or ANCHO_MESOS_SECRET_FILE).")  # fmt: skip
@click.option("--spark-master", envvar="ANCHO_SPARK_MASTER", default="local[*]",
              show_default=True, metavar="URL",
              help="Where Spark jobs (recomputed summaries) run: local[*] or spark://HOST:PORT"
                   " (or ANCHO_SPARK_MASTER).")  # fmt: skip
@click.option("--zk", type=ZkType(), metavar="zk://HOSTS/PATH",
              help="Elect the scheduling server among all given this URL; the others"
                   " serve the API and stand by.")  # fmt: skip
def server(
    master: str, store_url: str | None, bind: str, principal: str | None,
    secret_file: str | None, spark_master: str, zk: str | None,
) -> None:  # fmt: skip
    """Run the scheduler and the REST API (until SIGTERM; runs carry on after a restart)."""
    from .extras import require
    from .server.main import mesos_credential

    credential = mesos_credential(principal, secret_file)
    require("server", "`ancho server`")
    from .server.main import ServerOptions, serve

    logging.getLogger("ancho").setLevel(os.environ.get("ANCHO_LOG_LEVEL", "INFO").upper())
    serve(ServerOptions(master=master, store_url=store_url, bind=bind, credential=credential,
                        spark_master=spark_master, zk=zk))  # fmt: skip


@cli.command("list")
@query_command
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def list_runs(backend: Backend, as_json: bool) -> None:
    """List runs, newest first."""
    runs = backend.runs()
    if as_json:
        for r in runs:
            click.echo(json.dumps(r))
        return
    click.echo(f"{'RUN':12}  {'NAME':20}  {'STATE':11}  {'DONE':>21}  CREATED")
    for r in runs:
        c = r["counts"]
        done = f"{c['ok'] + c['failed']:,}/{c['total']:,}"
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["created_at"]))
        click.echo(f"{r['id']:12}  {r['name'][:20]:20}  {r['state']:11}  {done:>21}  {created}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@query_command
def status(backend: Backend, run_id: str) -> None:
    """A run's state, counts, timestamps and seed (JSON)."""
    click.echo(json.dumps(backend.run(run_id), indent=2))


@cli.command()
@click.argument("run_id", metavar="RUN")
@query_command
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), help="Output file.")
def results(backend: Backend, run_id: str, fmt: str, output: str | None) -> None:
    """Every sequence's outputs, in sequence order."""
    if fmt == "parquet":
        if output is None:
            raise AnchoError("--format parquet: needs -o FILE (Parquet is binary)")
        backend.write_parquet(run_id, output)
        return
    chunks = backend.results(run_id, fmt)
    first = next(chunks, b"")  # an unknown run fails before -o FILE is created
    sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    try:
        sink.write(first)
        for chunk in chunks:
            sink.write(chunk)
    finally:
        if output:
            sink.close()
        else:
            sink.flush()


@cli.command()
@click.argument("run_id", metavar="RUN")
@query_command
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table")
@click.option(
    "--recompute",
    is_flag=True,
    help="Recompute the built-in statistics from every stored result with Spark.",
)
def summary(backend: Backend, run_id: str, fmt: str, recompute: bool) -> None:
    """A run's summary statistics (merged from the executors' partial summaries)."""
    from .output import summary_table

    doc = backend.summary(run_id, recompute=recompute)
    click.echo(json.dumps(doc, indent=2) if fmt == "json" else summary_table(doc))


def report_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``-o FILE`` and ``--pdf``, as every report command takes them."""
    pdf = click.option("--pdf", is_flag=True, help="Write a PDF (printed with headless Chromium).")
    output = click.option("-o", "output", required=True, type=click.Path(), metavar="FILE",
                          help="Report file to write.")  # fmt: skip
    return output(pdf(command))


@cli.command()
@click.argument("run_id", metavar="RUN")
@report_options
@query_command
def report(backend: Backend, run_id: str, output: str, pdf: bool) -> None:
    """A self-contained HTML report of a run (charts, summary, failures, spec), or a PDF."""
    from .report import build_report, check_output_path, find_chromium, save_report

    check_output_path(output)
    chromium = find_chromium() if pdf else None
    data = backend.report_data(run_id)
    page = build_report(data.run, data.summary, data.results)
    save_report(page, output, pdf=pdf, chromium=chromium)
    click.echo(f"report of run {data.run.id} ({data.run.state}): {output}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@query_command
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(backend: Backend, run_id: str, follow: bool) -> None:
    """A run's log: scheduler, executor and model lines."""
    for line in backend.logs(run_id, follow):
        stamp = time.strftime("%H:%M:%S", time.localtime(line.ts))
        click.echo(f"{stamp} {line.source} {line.level}: {line.message}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@query_command
def kill(backend: Backend, run_id: str) -> None:
    """Kill a run (its scheduler stops its batches within a second)."""
    requested, state = backend.kill(run_id)
    if requested:
        click.echo(f"run {run_id}: kill requested")
    else:
        click.echo(f"run {run_id} already ended {state}")


@cli.command()
@click.argument("run_a", metavar="RUN_A")
@click.argument("run_b", metavar="RUN_B")
@query_command
@click.option("--output", metavar="X", help="The output to compare (default: the first shared).")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
def compare(backend: Backend, run_a: str, run_b: str, output: str | None, as_json: bool) -> None:
    """RUN_A's mean minus RUN_B's, with its 95% interval: paired over the sequence index
    when both have the same seed and sequence count (common random numbers), else Welch."""
    from .comparison import compare_runs

    a, b = backend.run(run_a), backend.run(run_b)
    result = compare_runs(a, b, backend.rows(run_a), backend.rows(run_b), output)
    click.echo(json.dumps(result.to_dict()) if as_json else result.text(run_a, run_b))


@cli.group()
def experiment() -> None:
    """Experiments: sweeps of a spec's parameters, one run per point."""


@experiment.command("list")
@query_command
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def experiment_list(backend: Backend, as_json: bool) -> None:
    """List experiments, newest first."""
    found = backend.experiments()
    if as_json:
        for e in found:
            click.echo(json.dumps(e))
        return
    click.echo(f"{'EXPERIMENT':12}  {'NAME':20}  {'POINTS':>6}  CREATED")
    for e in found:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["created_at"]))
        click.echo(f"{e['id']:12}  {e['name'][:20]:20}  {len(e['points']):>6}  {created}")


@experiment.command("status")
@click.argument("experiment_id", metavar="EXP")
@query_command
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json")
def experiment_status(backend: Backend, experiment_id: str, fmt: str) -> None:
    """An experiment's state and points: each one's parameters, run, state and summary."""
    from .experiments import experiment_table

    doc = backend.experiment(experiment_id)
    click.echo(json.dumps(doc, indent=2) if fmt == "json" else experiment_table(doc))


@experiment.command("results")
@click.argument("experiment_id", metavar="EXP")
@query_command
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
def experiment_results(backend: Backend, experiment_id: str, fmt: str) -> None:
    """One line per point: its parameters, then each output's mean, sem and ci95."""
    from .experiments import point_csv_lines, point_rows

    rows = point_rows(backend.experiment(experiment_id))
    if fmt == "csv":
        for line in point_csv_lines(rows):
            click.echo(line, nl=False)
        return
    for row in rows:
        click.echo(json.dumps(row))


@experiment.command("report")
@click.argument("experiment_id", metavar="EXP")
@report_options
@query_command
def experiment_report(backend: Backend, experiment_id: str, output: str, pdf: bool) -> None:
    """A self-contained HTML report: each output's mean and 95% band against each swept
    parameter, and the points table; or a PDF of it."""
    from .experiment_report import build_experiment_report
    from .report import check_output_path, find_chromium, save_report

    check_output_path(output)
    chromium = find_chromium() if pdf else None
    doc = backend.experiment(experiment_id)
    save_report(build_experiment_report(doc), output, pdf=pdf, chromium=chromium)
    click.echo(f"report of experiment {doc['experiment']} ({doc['state']}): {output}")


@cli.group()
def user() -> None:
    """Users: API tokens and (with Cassandra) a keyspace and role each."""


@user.command("add")
@click.argument("name")
@store_option
@click.option("--max-cpus", type=click.FloatRange(min=0, min_open=True),
              help="The most cpus the user's executors may hold together.")  # fmt: skip
def user_add(name: str, store_url: str | None, max_cpus: float | None) -> None:
    """Create a user; prints {"user", "token", "store"} (the token is shown only once)."""
    from .users import add_user

    click.echo(json.dumps(add_user(_store(store_url), name, max_cpus)))


@user.command("set")
@click.argument("name")
@store_option
@click.option("--max-cpus", required=True, type=QuotaType(),
              help="The user's new cpu quota, or 'none' to lift it.")  # fmt: skip
def user_set(name: str, store_url: str | None, max_cpus: float | None) -> None:
    """Change a user's cpu quota; a running server applies it within seconds."""
    from .users import set_quota

    set_quota(_store(store_url), name, max_cpus)
    click.echo(f"user {name}: max_cpus {'none' if max_cpus is None else f'{max_cpus:g}'}")


@user.command("list")
@store_option
def user_list(store_url: str | None) -> None:
    """Users (without secrets), one JSON object a line."""
    from .users import list_users

    for u in list_users(_store(store_url)):
        click.echo(json.dumps(u))


@user.command("revoke")
@click.argument("name")
@store_option
def user_revoke(name: str, store_url: str | None) -> None:
    """Revoke a user's token and stop their role from logging in."""
    from .users import revoke_user

    revoke_user(_store(store_url), name)
    click.echo(f"user {name} revoked")


def _add_cluster_commands() -> None:
    from .cluster.cli import cluster

    cli.add_command(cluster)


_add_cluster_commands()


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    sys.stderr.write(f"ancho: error: {message}\n")
    sys.exit(code)


def _configure_logging() -> None:
    """Warnings and errors on stderr; ``ANCHO_LOG_LEVEL=INFO`` (or DEBUG) for more."""
    level = os.environ.get("ANCHO_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level, format="ancho: %(levelname)s %(name)s: %(message)s")
    # pymesos adds its own INFO handler at import; keep it as quiet as ours.
    logging.getLogger("pymesos").setLevel(level)
    # The Cassandra driver logs connection failures as warnings with tracebacks; the
    # CLI reports them once, as a sentence, through StoreError.
    if level not in ("DEBUG", "INFO"):
        logging.getLogger("cassandra").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every Ancho error becomes one paragraph and an exit code."""
    _configure_logging()
    try:
        cli.main(args=argv, prog_name="ancho", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", EXIT_RUN_FAILED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(EXIT_BAD_INPUT)
    except AnchoError as exc:
        _fail(exc.format_message(), exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
