"""The ``medstream`` command line: the local stack, topics, migrations and contracts.

Later commands (``deid``, ``predict``, ``replay``, ``audit``) run the same library
code as the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from cryptography.exceptions import InvalidTag
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import contracts, migrate
from medstream import stack as local_stack
from medstream.audit.commands import audit_app, lineage, record_command
from medstream.clinical import SourceFormat
from medstream.db import make_engine
from medstream.deadletter import InvalidMessage
from medstream.deid.engine import DeidEngine
from medstream.deid.files import deidentify_file
from medstream.deid.vault import VaultCipher, rotate_batch
from medstream.deployment import CONSUMER_GROUPS, SERVICES
from medstream.failures import ENVIRONMENT_ERRORS
from medstream.kafka import consumer_lag, ensure_acls, ensure_topics, make_producer
from medstream.models.package import ModelIntegrityError, latest, registry_packages
from medstream.monitoring.news2 import detail, news2_now, stale_limits
from medstream.paths import SCHEMAS_DIR
from medstream.platform.quarantine import quarantined, release
from medstream.platform.retention import Pruned, prune
from medstream.platform.secrets import InsecureSettings, require
from medstream.replay import Outgoing, messages
from medstream.settings import get_settings

app = typer.Typer(
    help="MedStream: clinical AI models as a service on the EHR event stream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="The local Kafka, PostgreSQL and Redis servers.", no_args_is_help=True)
topics_app = typer.Typer(help="Kafka topics from the topic registry.", no_args_is_help=True)
acls_app = typer.Typer(help="Kafka ACLs from the identity table.", no_args_is_help=True)
db_app = typer.Typer(help="The PostgreSQL schema.", no_args_is_help=True)
schemas_app = typer.Typer(help="JSON Schemas and the AsyncAPI document.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(acls_app, name="acls")
app.add_typer(db_app, name="db")
app.add_typer(schemas_app, name="schemas")
models_app = typer.Typer(help="Model packages: train, list, show cards.", no_args_is_help=True)
predict_app = typer.Typer(
    help="Run a model on JSONL input, as the workers do.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(predict_app, name="predict")
deid_app = typer.Typer(
    help="De-identify text and files with the deid service's engine.", no_args_is_help=True
)
app.add_typer(deid_app, name="deid")
app.add_typer(audit_app, name="audit")
app.command("lineage")(lineage)
vault_app = typer.Typer(help="The PseudonymVault's keys.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")

console = Console(stderr=True)


def _report(message: str) -> None:
    console.print(f"[cyan]•[/cyan] {message}")


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _stack(cluster: bool) -> local_stack.Stack:
    settings = get_settings()
    return local_stack.Stack(
        settings.state_dir, cluster=cluster, kafka_protocol=settings.kafka_security_protocol
    )


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
    replicas: int = typer.Option(
        0,
        min=0,
        max=6,
        help="Processes per service, in the same consumer groups (0: MEDSTREAM_REPLICAS, 1).",
    ),
) -> None:
    """Start the stack (idempotent): servers, schema, topics and services."""
    _start(cluster=cluster, services=services, replicas=replicas)
    console.print("[green]MedStream stack is up.[/green] `medstream status` shows it.")


def _start(*, cluster: bool, services: bool, replicas: int = 0) -> None:
    settings = get_settings()
    replicas = replicas or settings.replicas
    try:
        local_stack.up(_stack(cluster=False), _report)
        _report("applying database migrations")
        migrate.upgrade()
        created = asyncio.run(ensure_topics(settings))
        _report(f"topics ready ({len(created)} created)")
        added, removed = asyncio.run(ensure_acls(settings))
        _report(f"Kafka ACLs match the table ({added} added, {removed} removed)")
        if cluster:
            local_stack.up(_stack(cluster=True), _report)
            asyncio.run(ensure_topics(local_stack.cluster_settings(settings)))
            asyncio.run(ensure_acls(local_stack.cluster_settings(settings)))
        if services:
            local_stack.up_services(
                _stack(cluster=False),
                local_stack.replicated(_service_executables(), replicas),
                _report,
            )
    except local_stack.StackError as exc:
        raise _fail(str(exc)) from None
    record_command("admin.up", {"cluster": cluster, "services": services, "replicas": replicas})


@app.command()
def down() -> None:
    """Stop every service and server that MedStream started (both stacks)."""
    record_command("admin.down", warn=False)  # audited when the database is up
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
    if healthy:
        for name, state in asyncio.run(_pipeline_state()):
            table.add_row(name, state)
    Console().print(table)
    if not healthy:
        raise typer.Exit(1)


async def _pipeline_state() -> list[tuple[str, str]]:
    """What waits in each consumer group, and outbox rows the broker refused for good:
    a service can be running while its partition goes nowhere, or its output is held."""
    settings = get_settings()
    rows: list[tuple[str, str]] = []
    groups = CONSUMER_GROUPS
    with contextlib.suppress(Exception):  # the table above already says what is down
        lag = await asyncio.wait_for(consumer_lag(settings, groups), 10)
        for group, waiting in lag.items():
            colour = "green" if not waiting else "yellow"
            rows.append((f"lag {group}", f"[{colour}]{waiting} waiting[/{colour}]"))
    engine = make_engine(settings)
    try:
        with contextlib.suppress(Exception):
            async with engine.connect() as conn:
                held = await conn.scalar(
                    text("SELECT count(*) FROM outbox WHERE quarantined_at IS NOT NULL")
                )
            colour = "green" if not held else "red"
            rows.append(("outbox quarantined", f"[{colour}]{held} rows[/{colour}]"))
    finally:
        await engine.dispose()
    return rows


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
    target = local_stack.cluster_settings(settings) if cluster else settings
    created = asyncio.run(ensure_topics(target))
    added, removed = asyncio.run(ensure_acls(target))
    record_command(
        "admin.topics.create",
        {"created": len(created), "cluster": cluster, "acls_added": added, "acls_removed": removed},
    )
    _report(f"{len(created)} topics created; ACLs: {added} added, {removed} removed")


@acls_app.command("apply")
def acls_apply(cluster: bool = typer.Option(False, help="On the 3-node cluster.")) -> None:
    """Make the broker's ACLs for MedStream's users exactly the table's."""
    settings = get_settings()
    added, removed = asyncio.run(
        ensure_acls(local_stack.cluster_settings(settings) if cluster else settings)
    )
    record_command("admin.acls.apply", {"added": added, "removed": removed, "cluster": cluster})
    _report(f"Kafka ACLs match the table: {added} added, {removed} removed")


@acls_app.command("show")
def acls_show() -> None:
    """Print the ACL table: each principal's topics, groups and rights."""
    from medstream.platform.identities import (  # noqa: PLC0415
        KAFKA_GRANTS,
        KAFKA_SUPER_USERS,
        kafka_user,
    )

    table = Table("principal (Kafka user)", "reads", "writes", "groups")
    for principal, grant in KAFKA_GRANTS.items():
        table.add_row(
            f"{principal} ({kafka_user(principal)})",
            "\n".join(grant.reads) or "-",
            "\n".join(grant.writes) or "-",
            "\n".join(grant.groups) or "-",
        )
    for principal in KAFKA_SUPER_USERS:
        table.add_row(f"{principal} ({kafka_user(principal)})", "all (super user)", "all", "all")
    console.print(table)


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
    # 0008 seals older vault rows' identities: never to a development key.
    _require("database_admin_url", "vault_key", "relink_public_key")
    migrate.upgrade(revision)
    record_command("admin.db.upgrade", {"revision": revision})


@db_app.command("prune")
def db_prune(
    window_days: float = typer.Option(
        None, min=1.0, help="Dedup window in days (default: MEDSTREAM_DEDUP_WINDOW_DAYS)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count the rows, delete nothing."),
    every_s: float = typer.Option(
        0.0, "--every", min=0.0, help="Run again every this many seconds (0: once)."
    ),
    batch: int = typer.Option(10_000, min=1, max=100_000, help="Rows per transaction."),
) -> None:
    """Delete inbox and outbox rows older than the dedup window: never an outbox row
    not yet sent or quarantined, never an inbox row younger than its topic's retention
    plus a day (docs/architecture.md). Runs as the schema's owner; safe to stop."""
    settings = get_settings()
    _require("database_admin_url")
    window = window_days if window_days is not None else settings.dedup_window_days

    def progress(table: str, total: int) -> None:
        console.print(f"• {table}: {total} rows deleted so far")

    async def once() -> Pruned:
        engine = make_engine(settings, admin=True)
        try:
            return await prune(engine, window, batch=batch, dry_run=dry_run, progress=progress)
        finally:
            await engine.dispose()

    while True:
        try:
            done = asyncio.run(once())
        except ENVIRONMENT_ERRORS as exc:
            _postgres_unreachable(exc)
            if not every_s:
                raise typer.Exit(2) from None
        else:
            verb = "would delete" if dry_run else "deleted"
            console.print(
                f"[green]done:[/green] {verb} {done.inbox} inbox and {done.outbox} outbox rows"
                f" older than {window:g} days"
            )
            if not dry_run:
                record_command(
                    "admin.db.prune",
                    {"window_days": window, "inbox": done.inbox, "outbox": done.outbox},
                )
        if not every_s:
            return
        time.sleep(every_s)


T = TypeVar("T")


def _as_owner(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` with the schema owner's engine; when PostgreSQL cannot be reached,
    say what to do and exit 2."""

    async def run() -> T:
        engine = make_engine(get_settings(), admin=True)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except ENVIRONMENT_ERRORS as exc:
        _postgres_unreachable(exc)
        raise typer.Exit(2) from None


@db_app.command("quarantined")
def db_quarantined(
    topic: str = typer.Option(None, help="Only rows for this topic."),
    limit: int = typer.Option(100, min=1, max=10_000, help="Rows to show, oldest first."),
) -> None:
    """List the outbox rows the relay quarantined (the broker refused them for good):
    id, topic, reason, size and time, never the payload. Fix the cause, then `medstream
    db release`."""
    _require("database_admin_url")
    rows, total = _as_owner(lambda engine: quarantined(engine, topic, limit))
    if not total:
        _report("no quarantined outbox rows")
        return
    table = Table("id", "topic", "reason", "bytes", "quarantined at", "message id")
    for row in rows:
        table.add_row(
            str(row.id),
            row.topic,
            row.reason or "",
            str(row.size),
            row.quarantined_at.isoformat(timespec="seconds"),
            row.message_id,
        )
    Console().print(table)
    if total > len(rows):
        console.print(f"{len(rows)} of {total} shown; use --limit or --topic to see others")
    console.print(
        "A row waits until its cause is fixed (a topic's size limit, say; docs/"
        "architecture.md), then `medstream db release ID...` or `--topic T` sends it."
    )


@db_app.command("release")
def db_release(
    ids: list[int] = typer.Argument(None, help="Outbox row ids (from `db quarantined`)."),
    topic: str = typer.Option(None, help="Every quarantined row for this topic."),
) -> None:
    """Release quarantined outbox rows: their service's relay sends them at its next
    pass. A row whose cause is still there is quarantined again."""
    _require("database_admin_url")
    if not ids and topic is None:
        raise _fail("name the rows to release: ids from `medstream db quarantined`, or --topic")
    released = _as_owner(lambda engine: release(engine, list(ids) if ids else None, topic))
    missing = sorted(set(ids or ()) - set(released))
    if missing:
        console.print(
            f"[yellow]not released:[/yellow] {', '.join(map(str, missing))}"
            " (no such row, not quarantined, or already sent)"
        )
    _report(f"released {len(released)} rows; their services' relays send them next")
    record_command("admin.db.release", {"rows": released, "topic": topic})
    if missing:
        raise typer.Exit(1)


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


def _engine(mode: str | None) -> DeidEngine:
    settings = get_settings()
    if mode is not None:
        settings = settings.model_copy(update={"deid_replacement": mode})
    return DeidEngine.from_settings(settings)


@deid_app.command("text")
def deid_text(
    replacement: str = typer.Option(
        None, help="tag or surrogate (default: MEDSTREAM_DEID_REPLACEMENT)."
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Name the detectors that found each span (model, pattern, known)."
    ),
) -> None:
    """JSONL on stdin ({"id", "text"}, optional "patient") to JSONL with spans on stdout.

    Dates shift by the offset of "patient" when given, else of "id", so one patient's
    dates move together when their notes share a patient value. Lines are read in
    batches of 64, and the learned tagger reads each batch in one pass.
    """
    engine = _engine(replacement)
    batch: list[dict[str, Any]] = []
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict) or "id" not in item or "text" not in item:
            raise _fail(f'line {number}: expected a JSON object with "id" and "text"')
        batch.append(item)
        if len(batch) == 64:
            _deid_lines(engine, batch, explain)
            batch = []
    _deid_lines(engine, batch, explain)


def _deid_lines(engine: DeidEngine, batch: list[dict[str, Any]], explain: bool) -> None:
    engine.prepare([str(item["text"]) for item in batch])
    for item in batch:
        ident = item["id"]
        clean, spans = engine.text(str(item["text"]), str(item.get("patient") or ident))
        found = []
        for s in spans:
            span = {
                "start": s.start,
                "end": s.end,
                "type": s.type.value,
                "replacement": s.replacement,
            }
            if explain:
                span["source"] = s.source
            found.append(span)
        sys.stdout.write(json.dumps({"id": ident, "text": clean, "spans": found}) + "\n")


def _deid_files(source_format: SourceFormat, paths: list[Path], replacement: str | None) -> None:
    engine = _engine(replacement)
    failed = 0
    for path in paths:
        try:
            out, summary = deidentify_file(engine, source_format, path)
        except InvalidMessage as exc:
            failed += 1
            console.print(f"[red]{path}[/red]: {exc.code}: {exc.reason}")
            continue
        _report(f"{path} -> {out.name} (summary: {summary.name})")
    if failed:
        raise typer.Exit(1)


@deid_app.command("fhir")
def deid_fhir(
    paths: list[Path], replacement: str = typer.Option(None, help="tag or surrogate.")
) -> None:
    """De-identify FHIR JSON files (a resource or a Bundle each)."""
    _deid_files(SourceFormat.FHIR, paths, replacement)


@deid_app.command("hl7v2")
def deid_hl7v2(
    paths: list[Path], replacement: str = typer.Option(None, help="tag or surrogate.")
) -> None:
    """De-identify HL7 v2 ER7 files (one or more messages each)."""
    _deid_files(SourceFormat.HL7V2, paths, replacement)


@deid_app.command("dicom")
def deid_dicom(
    paths: list[Path], replacement: str = typer.Option(None, help="tag or surrogate.")
) -> None:
    """De-identify DICOM Part 10 files (PS3.15 Basic profile; pixels untouched)."""
    _deid_files(SourceFormat.DICOM, paths, replacement)


@app.command()
def replay(paths: list[Path]) -> None:
    """Publish FHIR JSON/NDJSON, HL7 v2 and DICOM files to their inbound topics."""
    outgoing = list(messages(paths))
    if not outgoing:
        raise _fail("no FHIR, HL7 v2 or DICOM files found in the given paths")
    asyncio.run(_publish(outgoing))
    record_command("admin.replay", {"messages": len(outgoing), "files": len(paths)})


async def _publish(outgoing: list[Outgoing]) -> None:
    producer = make_producer(get_settings())
    await producer.start()
    try:
        with Progress(
            TextColumn("[cyan]replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("replay", total=len(outgoing))
            for item in outgoing:
                await producer.send_and_wait(
                    item.topic, value=item.value, headers=[("source-system", b"medstream-replay")]
                )
                progress.advance(task)
    finally:
        await producer.stop()
    _report(f"published {len(outgoing)} messages")


@models_app.command("train")
def models_train(
    family: str = typer.Argument(..., help="monitoring | imaging | notes | deid"),
    seed: int | None = typer.Option(None, help="Seeds the data generator and the weights."),
    version: str | None = typer.Option(
        None, help="Package version to write; the default is the family's current one."
    ),
    examples: int | None = typer.Option(
        None,
        help="Training examples (stays, phantoms, reports or notes); the default is the card's.",
    ),
    epochs: int | None = typer.Option(None),
) -> None:
    """Train a reference model on its synthetic data and write a sealed package."""
    registry = get_settings().model_registry
    # 2.x: notes reads mentions, monitoring reads an hourly grid (1.x stays in git)
    version = version or {"notes": "2.1.0", "monitoring": "2.0.0"}.get(family, "1.0.0")
    if family == "monitoring":
        from medstream.monitoring import model as monitoring  # noqa: PLC0415  (loads torch)

        config = _config(monitoring.TrainingConfig(), seed, "train_patients", examples, epochs)
        trained, metrics = monitoring.train(config, _report)
        package = monitoring.save_package(trained, metrics, registry, version)
        for policy, scores in metrics["held_out"].items():
            m = scores[f"{monitoring.HORIZON_HOURS}h"]
            _report(
                f"held out, {policy} charting: AUROC {m['model_auroc']} (NEWS2 "
                f"{m['news2_auroc']}, rows {m['rows_24h_auroc']})"
            )
    elif family == "imaging":
        from medstream.imaging import model as imaging  # noqa: PLC0415

        config = _config(imaging.TrainingConfig(), seed, "train_images", examples, epochs)
        package = imaging.train_package(config, registry, version, _report)
        _report(f"held-out macro AUROC {package.json('metrics.json')['held_out']['macro_auroc']}")
    elif family == "notes":
        from medstream.notes import model as notes  # noqa: PLC0415

        config = _config(notes.TrainingConfig(), seed, "train_reports", examples, epochs)
        labeller, metrics = notes.train(config, _report)
        package = notes.save_package(labeller, metrics, registry, version)
        held = metrics["held_out_phrasing"]
        _report(
            f"held-out phrasing macro F1 {held['model']['macro_f1']} "
            f"(rules {held['rules']['macro_f1']})"
        )
    elif family == "deid":
        from medstream.deid import tagger  # noqa: PLC0415  (loads torch)

        config = _config(tagger.TrainingConfig(), seed, "train_notes", examples, epochs)
        model, metrics = tagger.train(config, _report)
        package = tagger.save_package(model, metrics, registry, version)
        _report(
            "held-out token recall: "
            + ", ".join(
                f"{name} {metrics[name]['token_recall']}"
                for name in ("heldout_kinds", "heldout_locales", "heldout_families")
            )
        )
    else:
        raise _fail(f"no trainer for {family!r}; available: monitoring, imaging, notes, deid")
    _report(f"wrote {package.folder} (checksum {package.checksum[:12]})")
    record_command(
        "admin.models.train",
        {"model": package.name, "version": package.version, "checksum": package.checksum},
    )


def _config(
    default: Any, seed: int | None, size_field: str, size: int | None, epochs: int | None
) -> Any:
    """A training config with the command line's overrides."""
    changes: dict[str, int] = {}
    if seed is not None:
        changes["seed"] = seed
    if size is not None:
        changes[size_field] = size
    if epochs is not None:
        changes["epochs"] = epochs
    return dataclasses.replace(default, **changes)


@models_app.command("list")
def models_list() -> None:
    """The verified packages in the registry."""
    table = Table("name", "version", "checksum", "folder")
    for package in registry_packages(get_settings().model_registry):
        table.add_row(package.name, package.version, package.checksum[:12], str(package.folder))
    Console().print(table)


@models_app.command("card")
def models_card(name: str) -> None:
    """Print the model card of the latest version of NAME."""
    try:
        package = latest(get_settings().model_registry, name)
    except ModelIntegrityError as exc:
        raise _fail(str(exc)) from None
    sys.stdout.write(package.card)


@predict_app.command("monitoring")
def predict_monitoring() -> None:
    """JSONL {"id", "observations": [...]} on stdin to risk, NEWS2 and explanation."""
    from medstream.monitoring import model as monitoring  # noqa: PLC0415  (loads torch)

    try:
        package = latest(get_settings().model_registry, monitoring.NAME)
    except ModelIntegrityError as exc:
        raise _fail(str(exc)) from None
    try:
        limits = stale_limits(get_settings().news2_stale_minutes)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    scorer = monitoring.Scorer(package, monitoring.load_model(package))
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            identifier = item["id"]
            times, sets = monitoring.observation_sets(_observation_list(item["observations"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise _fail(
                f'line {number}: expected {{"id", "observations": [{{"time", "code", '
                '"value", "unit"}}]}} with ISO times and LOINC codes'
            ) from None
        if not sets:
            raise _fail(f"line {number}: no vital-sign observations with a known LOINC code")
        if item.get("spo2_scale") == 2:  # the patient's SpO2 target is 88-92%
            sets = [dataclasses.replace(s, spo2_scale_2=True) for s in sets]
        features = monitoring.window(times, sets, len(sets) - 1)
        logits = scorer.logits(features[None])[0]
        risks = {
            str(h): round(1 / (1 + math.exp(-float(v))), 4)
            for h, v in zip(monitoring.HORIZONS, logits, strict=True)
        }
        score = news2_now(times, sets, limits=limits)
        explanation = monitoring.explain(scorer.model, features)
        sys.stdout.write(
            json.dumps(
                {
                    "id": identifier,
                    "risk": risks[str(monitoring.HORIZON_HOURS)],
                    "horizon_hours": monitoring.HORIZON_HOURS,
                    "risk_by_horizon": risks,
                    **detail(score),
                    "explanation": explanation,
                    "explanation_notes": monitoring.explanation_notes(explanation, score.ages),
                }
            )
            + "\n"
        )


def _observation_list(value: object) -> list[dict[str, Any]]:
    """The CONTRACT's observations, or TypeError when they are not a list of objects."""
    if not isinstance(value, list) or not all(isinstance(o, dict) for o in value):
        raise TypeError("observations must be a list of objects")
    return value


@predict_app.command("notes")
def predict_notes(
    batch: int = typer.Option(32, help="Reports per model call."),
) -> None:
    """JSONL {"id", "text"} on stdin to the 14 CheXpert labels and word attributions."""
    from medstream.notes import model as notes  # noqa: PLC0415  (loads torch)

    try:
        labeller = notes.Labeller(latest(get_settings().model_registry, notes.NAME))
    except ModelIntegrityError as exc:
        raise _fail(str(exc)) from None
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        texts = [item["text"] for item in pending]
        probs, explanations = labeller.predict(texts)
        for item, p, explanation in zip(pending, probs, explanations, strict=True):
            record = {
                "id": item["id"],
                "labels": notes.labels_output(p),
                "explanation": explanation,
            }
            sys.stdout.write(json.dumps(record) + "\n")
        pending.clear()

    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            item = None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str) or "id" not in item:
            raise _fail(f'line {number}: expected {{"id", "text"}} with text a string')
        pending.append(item)
        if len(pending) >= batch:
            flush()
    if pending:
        flush()


@predict_app.command("imaging")
def predict_imaging(
    paths: list[Path] = typer.Argument(..., help="DICOM files."),
    heatmaps: Path = typer.Option(
        Path("heatmaps"), help="Folder for the Grad-CAM PNGs (created if missing)."
    ),
) -> None:
    """DICOM files to CheXpert probabilities and a Grad-CAM heatmap PNG each (JSONL)."""
    from medstream.imaging import model as imaging  # noqa: PLC0415  (loads torch)
    from medstream.imaging.preprocess import preprocess_dicom  # noqa: PLC0415

    try:
        classifier = imaging.Classifier(latest(get_settings().model_registry, imaging.NAME))
    except ModelIntegrityError as exc:
        raise _fail(str(exc)) from None
    heatmaps.mkdir(parents=True, exist_ok=True)
    failed = 0
    for path in paths:
        try:
            model_input = preprocess_dicom(path.read_bytes())
        except OSError as exc:
            raise _fail(f"{path}: cannot read ({exc.strerror})") from None
        except InvalidMessage as exc:
            failed += 1
            sys.stderr.write(f"{path}: {exc.reason} [{exc.code}]\n")
            continue
        result = imaging.predict_one(classifier, model_input)
        png = heatmaps / f"{path.stem}.heatmap.png"
        png.write_bytes(result.heatmap_png)
        sys.stdout.write(
            json.dumps({"path": str(path), "labels": result.labels, "heatmap": str(png)}) + "\n"
        )
    if failed:
        raise _fail(f"{failed} of {len(paths)} files are not usable chest radiographs")


@app.command()
def demo(
    patients: int = typer.Option(50, min=1, help="Patients admitted."),
    hours: int = typer.Option(24, min=1, max=72, help="Hours of charting."),
    every: int = typer.Option(15, min=5, help="Minutes between vital-sign sets."),
    malformed: int = typer.Option(40, min=0, help="Deliberately malformed messages."),
    seed: int = typer.Option(2026, help="Seeds the feed."),
    keep: bool = typer.Option(True, help="Keep the stack running afterwards (--no-keep stops it)."),
    timeout: int = typer.Option(3600, help="Seconds to wait for every outcome."),
    via: str = typer.Option(
        "kafka",
        help="kafka: publish to the inbound topics; gateways: send over MLLP, DICOM and HTTP.",
    ),
) -> None:
    """Start everything, replay a synthetic hospital, wait for every outcome, summarise."""
    if via not in ("kafka", "gateways"):
        raise _fail("--via takes kafka or gateways")
    from medstream.demo.feed import hospital_feed  # noqa: PLC0415  (torch, MONAI)
    from medstream.demo.run import run_demo  # noqa: PLC0415

    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retries are not news here
    _start(cluster=False, services=True)
    run = "d" + datetime.now(UTC).strftime("%d%H%M%S")
    _report(f"generating the feed: {patients} patients, {hours} h, vitals every {every} min")
    feed = hospital_feed(
        patients=patients, hours=hours, every_minutes=every, malformed=malformed, seed=seed, run=run
    )
    try:
        ok = asyncio.run(
            run_demo(
                get_settings(),
                feed,
                timeout_s=timeout,
                console=console,
                via_gateways=via == "gateways",
            )
        )
        record_command("admin.demo", {"messages": len(feed.messages), "ok": ok})
    finally:
        if not keep:
            down()
    if not ok:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of the ``medstream`` command."""
    app()


@vault_app.command("rotate-key")
def vault_rotate_key(
    batch: int = typer.Option(200, min=1, max=10_000, help="Rows per transaction."),
    pause_s: float = typer.Option(0.0, min=0.0, hidden=True, help="Wait between batches."),
) -> None:
    """Re-encrypt every vault row under the current key (MEDSTREAM_VAULT_KEY, with id
    MEDSTREAM_VAULT_KEY_ID), online: a batch a transaction, rows the services hold
    skipped and taken in the next pass. Safe to stop and rerun. The services must
    already accept the old key (MEDSTREAM_VAULT_PREVIOUS_KEYS); see docs/security.md."""
    settings = get_settings()
    _require("vault_key")
    cipher = VaultCipher.from_settings(settings)

    async def rotate() -> int:
        engine = make_engine(settings)
        rotated = 0
        try:
            while True:
                async with engine.begin() as conn:
                    done = await rotate_batch(conn, cipher, batch)
                rotated += done.rotated
                console.print(
                    f"• {rotated} rows re-encrypted under {cipher.key_id}, {done.remaining} left"
                )
                if done.remaining == 0:
                    return rotated
                if done.rotated == 0:
                    await asyncio.sleep(0.5)  # the rows left are locked by a service
                await asyncio.sleep(pause_s)
        finally:
            await engine.dispose()

    try:
        rotated = asyncio.run(rotate())
    except ENVIRONMENT_ERRORS as exc:
        _postgres_unreachable(exc)
        raise typer.Exit(2) from None
    except InvalidTag:
        console.print(
            "[red]error:[/red] a vault row is sealed under a key this process does not have. "
            "Set MEDSTREAM_VAULT_PREVIOUS_KEYS to ID:BASE64 of the old key and run again."
        )
        raise typer.Exit(2) from None
    record_command("vault.rotate_key", {"rows": rotated, "key_id": cipher.key_id})
    console.print(f"[green]done:[/green] every vault row is under key {cipher.key_id}")


def _postgres_unreachable(exc: BaseException) -> None:
    """Say that a command could not reach PostgreSQL, and what to do."""
    console.print(
        f"[red]error:[/red] PostgreSQL is unreachable ({type(exc).__name__}); nothing "
        "is lost: start the stack (`medstream up`) and run the command again."
    )


def _require(*names: str) -> None:
    """Outside dev, stop an operator command that would use a development secret."""
    try:
        require(get_settings(), *names)
    except InsecureSettings as refused:
        console.print(f"[red]error:[/red] {refused}")
        raise typer.Exit(2) from None
