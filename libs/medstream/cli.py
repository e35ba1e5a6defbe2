"""The ``medstream`` command line: the local stack, topics, migrations and contracts.

Later commands (``deid``, ``predict``, ``replay``, ``audit``) run the same library
code as the services.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from medstream import contracts, migrate
from medstream import stack as local_stack
from medstream.deployment import SERVICES
from medstream.kafka import ensure_topics
from medstream.paths import SCHEMAS_DIR
from medstream.settings import get_settings

app = typer.Typer(
    help="MedStream: clinical AI models as a service on the EHR event stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Kafka, PostgreSQL and Redis servers.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics from the topic registry.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schemas and the AsyncAPI document.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")

console = Console(stderr=True)


def _report(message: str) -> None:
    console.print(f"[cyan]•[/cyan] {message}")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _stack(cluster: bool) -> local_stack.Stack:
    return local_stack.Stack(get_settings().state_dir, cluster=cluster)


def _service_executables() -> dict[str, Path]:
    bin_dir = Path(sys.executable).parent
    found = {}
    for spec in SERVICES:
        path = bin_dir / spec.entry_point
        located = path if path.exists() else shutil.which(spec.entry_point)
        if located is None:
            raise _fail(f"{spec.entry_point} is not installed; run `make setup`.")
        found[spec.name] = Path(located)
    return found


@app.command()
def up(
    cluster: bool = typer.Option(False, help="Also start the 3-node Kafka cluster."),
    services: bool = typer.Option(True, help="Start the MedStream services too."),
) -> None:
    """Start the stack (idempotent): servers, schema, topics and services."""
    settings = get_settings()
    try:
        local_stack.up(_stack(cluster=False), _report)
        _report("applying database migrations")
        migrate.upgrade()
        created = asyncio.run(ensure_topics(settings))
        _report(f"topics ready ({len(created)} created)")
        if cluster:
            local_stack.up(_stack(cluster=True), _report)
            asyncio.run(ensure_topics(local_stack.cluster_settings(settings)))
        if services:
            local_stack.up_services(_stack(cluster=False), _service_executables(), _report)
    except local_stack.StackError as exc:
        raise _fail(str(exc)) from None
    console.print("[green]MedStream stack is up.[/green] `medstream status` shows it.")


@app.command()
def down() -> None:
    """Stop every service and server that MedStream started (both stacks)."""
    local_stack.down_services(_stack(cluster=False), _report)
    local_stack.down(_stack(cluster=True), _report)
    local_stack.down(_stack(cluster=False), _report)
    console.print("[green]MedStream stack is down.[/green]")


@app.command()
def status() -> None:
    """Show the health of each server and service."""
    table = Table("component", "state")
    healthy = True
    for name, ok in local_stack.status(_stack(cluster=False)).items():
        healthy &= ok
        table.add_row(name, "[green]healthy[/green]" if ok else "[red]down[/red]")
    for name, ok in local_stack.services_running(_stack(cluster=False)).items():
        healthy &= ok
        table.add_row(f"service {name}", "[green]running[/green]" if ok else "[red]down[/red]")
    if local_stack.kafka_healthy(_stack(cluster=True)):
        table.add_row("kafka cluster (3 nodes)", "[green]healthy[/green]")
    Console().print(table)
    if not healthy:
        raise typer.Exit(1)


@stack_app.command("up")
def stack_up(cluster: bool = typer.Option(False, help="The 3-node Kafka cluster.")) -> None:
    """Start only the servers (no migrations, topics or services)."""
    try:
        local_stack.up(_stack(cluster), _report)
    except local_stack.StackError as exc:
        raise _fail(str(exc)) from None


@stack_app.command("down")
def stack_down(cluster: bool = typer.Option(False, help="The 3-node Kafka cluster.")) -> None:
    """Stop only the servers of one stack."""
    local_stack.down(_stack(cluster), _report)


@stack_app.command("leftovers")
def stack_leftovers() -> None:
    """Fail if any process of the stack is still running (checks `medstream down`)."""
    found = local_stack.leftovers(get_settings().state_dir)
    for pid, cmdline in found:
        console.print(f"[red]still running[/red] pid {pid}: {cmdline}")
    if found:
        raise typer.Exit(1)
    _report("no MedStream process is running")


@topics_app.command("create")
def topics_create(cluster: bool = typer.Option(False, help="On the 3-node cluster.")) -> None:
    """Create the registry's topics that are missing."""
    settings = get_settings()
    created = asyncio.run(
        ensure_topics(local_stack.cluster_settings(settings) if cluster else settings)
    )
    _report(f"{len(created)} topics created")


@topics_app.command("list")
def topics_list() -> None:
    """Print the topic registry."""
    from medstream.topics import ALL_TOPICS  # noqa: PLC0415

    table = Table("topic", "partitions", "retention (days)", "dead letter", "payload")
    for topic in ALL_TOPICS:
        table.add_row(
            topic.name,
            str(topic.partitions),
            f"{topic.retention_ms / 86_400_000:g}",
            topic.dead_letter or "",
            topic.payload.__name__ if topic.payload else topic.content_type,
        )
    Console().print(table)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply the Alembic migrations."""
    migrate.upgrade(revision)


@schemas_app.command("export")
def schemas_export(target: Path = typer.Option(SCHEMAS_DIR, help="Folder to write.")) -> None:
    """Write the JSON Schemas and the AsyncAPI document from the code."""
    for relative in contracts.export(target):
        _report(f"wrote {target / relative}")


@schemas_app.command("check")
def schemas_check(target: Path = typer.Option(SCHEMAS_DIR, help="Folder to check.")) -> None:
    """Fail when the committed contract files differ from the code."""
    problems = contracts.drift(target)
    if problems:
        raise _fail(
            "schemas drifted from the code: "
            + ", ".join(problems)
            + ". Run `medstream schemas export` and commit the result."
        )
    _report("schemas match the code")


def main() -> None:
    """Entry point of the ``medstream`` command."""
    app()
