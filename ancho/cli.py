"""The ``ancho`` command line (see the CLI contract in DESIGN.md).

Exit codes: 0 the run finished; 1 it finished FAILED or KILLED; 2 bad input (spec,
flags, unreachable service) with a one-paragraph message and no traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .errors import AnchoError, SpecError
from .store import Store, open_store

if TYPE_CHECKING:
    from .report import ReportData

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


store_option = click.option(
    "--store",
    "store_url",
    envvar="ANCHO_STORE",
    metavar="URL",
    help="sqlite:///path/to.db or cassandra://… (default ./.ancho/ancho.db, or ANCHO_STORE).",
)


server_option = click.option(
    "--server",
    "server_flag",
    metavar="URL",
    help="Go through an Ancho server (else ANCHO_SERVER or the config file, unless --store).",
)


def _client(server_flag: str | None, store_url: str | None) -> Any:
    """The REST client to use, or None for the store (``--server`` wins, then ``--store``)."""
    from .client import Client, server_url

    if server_flag:
        return Client.connect(server_url(server_flag) or server_flag)
    if store_url:
        return None
    url = server_url(None)
    return Client.connect(url) if url else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ancho")
def cli() -> None:
    """Ancho runs Python simulation models at scale on Mesos."""


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
    run_id = client.submit(data)["id"]
    click.echo(f"run {run_id}")
    if not wait_:
        return
    record = wait(client, run_id, sys.stderr)
    if record.reason and record.state != "FINISHED":
        click.echo(f"{record.state}: {record.reason}", err=True)
    sys.exit(EXIT_OK if record.state == "FINISHED" else EXIT_RUN_FAILED)


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
@store_option
@server_option
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of a table.")
def list_runs(store_url: str | None, server_flag: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    client = _client(server_flag, store_url)
    if client is not None:
        runs = client.runs()
    else:
        runs = [r.to_dict() for r in _store(store_url).list_runs()]
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
@store_option
@server_option
def status(run_id: str, store_url: str | None, server_flag: str | None) -> None:
    """A run's state, counts, timestamps and seed (JSON)."""
    client = _client(server_flag, store_url)
    if client is not None:
        doc = client.run(run_id)
    else:
        from .output import run_document

        store = _store(store_url)
        doc = run_document(store.get_run(run_id), store)
    click.echo(json.dumps(doc, indent=2))


@cli.command()
@click.argument("run_id", metavar="RUN")
@store_option
@server_option
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv", "parquet"]), default="jsonl")
@click.option("-o", "output", type=click.Path(dir_okay=False, writable=True), help="Output file.")
def results(
    run_id: str, store_url: str | None, server_flag: str | None, fmt: str, output: str | None
) -> None:
    """Every sequence's outputs, in sequence order."""
    from .output import write_csv, write_jsonl

    client = _client(server_flag, store_url)
    if client is not None:
        if fmt == "parquet":
            raise AnchoError("--format parquet: not through a server; use jsonl or csv")
        sink = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            for chunk in client.results(run_id, fmt):
                sink.write(chunk)
        finally:
            if output:
                sink.close()
        return
    store = _store(store_url)
    run = store.get_run(run_id)
    rows = store.iter_results(run_id)
    if fmt == "parquet":
        if output is None:
            raise AnchoError("--format parquet: needs -o FILE (Parquet is binary)")
        from .extras import require

        require("parquet", "`ancho results --format parquet`")
        from .parquet import write_results_parquet

        write_results_parquet(rows, output)
        return
    stream = open(output, "w", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "csv":
            write_csv(rows, list(run.outputs or []), stream)
        else:
            write_jsonl(rows, stream)
    finally:
        if output:
            stream.close()


@cli.command()
@click.argument("run_id", metavar="RUN")
@store_option
@server_option
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="table")
@click.option(
    "--recompute",
    is_flag=True,
    help="Recompute the built-in statistics from every stored result with Spark.",
)
def summary(run_id: str, store_url: str | None, server_flag: str | None, fmt: str,
            recompute: bool) -> None:  # fmt: skip
    """A run's summary statistics (merged from the executors' partial summaries)."""
    from .output import summary_document, summary_table

    client = _client(server_flag, store_url)
    if client is not None:
        doc = client.summary(run_id, recompute=recompute)
    else:
        store = _store(store_url)
        record, stored = store.get_run(run_id), store.get_summary(run_id)
        if recompute:
            from .recompute import recompute_outputs

            stored = {**(stored or {}), "outputs": recompute_outputs(store, record)}
        doc = summary_document(record, stored)
    click.echo(json.dumps(doc, indent=2) if fmt == "json" else summary_table(doc))


def _report_data(run_id: str, store_url: str | None, server_flag: str | None) -> ReportData:
    """What ``ancho report`` shows (run, summary, results iterator), from the store or API."""
    from .client import record_from_dict
    from .report import ReportData

    client = _client(server_flag, store_url)
    if client is not None:
        run = record_from_dict(client.run(run_id))
        return ReportData(run, client.summary(run_id), client.result_rows(run_id))
    store = _store(store_url)
    run = store.get_run(run_id)
    return ReportData(run, store.get_summary(run_id), store.iter_results(run_id))


@cli.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "-o", "output", required=True, type=click.Path(), metavar="FILE", help="Report file to write."
)
@click.option("--pdf", is_flag=True, help="Write a PDF (printed with headless Chromium).")
@store_option
@server_option
def report(
    run_id: str, output: str, pdf: bool, store_url: str | None, server_flag: str | None
) -> None:
    """A self-contained HTML report of a run (charts, summary, failures, spec), or a PDF."""
    from .report import build_report, check_output_path, find_chromium, save_report

    check_output_path(output)
    chromium = find_chromium() if pdf else None
    data = _report_data(run_id, store_url, server_flag)
    page = build_report(data.run, data.summary, data.results)
    save_report(page, output, pdf=pdf, chromium=chromium)
    click.echo(f"report of run {data.run.id} ({data.run.state}): {output}")


@cli.command()
@click.argument("run_id", metavar="RUN")
@store_option
@server_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until the run ends.")
def logs(run_id: str, store_url: str | None, server_flag: str | None, follow: bool) -> None:
    """A run's log: scheduler, executor and model lines."""
    client = _client(server_flag, store_url)
    if client is not None:
        for ev in client.logs(run_id, follow):
            click.echo(_log_line(ev["ts"], ev["source"], ev["level"], ev["message"]))
        return
    from .store.follow import EventFollower

    store = _store(store_url)
    store.get_run(run_id)
    lines = EventFollower(store, run_id)
    while True:
        done = store.get_run(run_id).done  # read before the events: none is missed
        for ev in lines.poll():
            click.echo(_log_line(ev.ts, ev.source, ev.level, ev.message))
        if not follow or done:
            return
        time.sleep(0.25)


def _log_line(ts: float, source: str, level: str, message: str) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(ts))
    return f"{stamp} {source} {level}: {message}"


@cli.command()
@click.argument("run_id", metavar="RUN")
@store_option
@server_option
def kill(run_id: str, store_url: str | None, server_flag: str | None) -> None:
    """Kill a run (its scheduler stops its batches within a second)."""
    client = _client(server_flag, store_url)
    if client is not None:
        doc = client.kill(run_id)
        if doc.get("kill_requested"):
            click.echo(f"run {run_id}: kill requested")
        else:
            click.echo(f"run {run_id} already ended {doc['state']}")
        return
    store = _store(store_url)
    run = store.get_run(run_id)
    if run.done:
        click.echo(f"run {run_id} already ended {run.state}")
        return
    store.update_run(run_id, kill_requested=1)
    click.echo(f"run {run_id}: kill requested")


@cli.group()
def user() -> None:
    """Users: API tokens and (with Cassandra) a keyspace and role each."""


@user.command("add")
@click.argument("name")
@store_option
def user_add(name: str, store_url: str | None) -> None:
    """Create a user; prints {"user", "token", "store"} (the token is shown only once)."""
    from .users import add_user

    click.echo(json.dumps(add_user(_store(store_url), name)))


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
