"""``medstream audit verify|query`` and ``medstream lineage``, and the audit record
of every administrative command.

Commands read PostgreSQL as the services' role: an auditor needs no more to verify
the chains, and the role cannot change what it reads.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from medstream import outbox
from medstream.audit import audit_message
from medstream.audit.anchor import AnchorFile
from medstream.audit.chain import Finding, Tampering
from medstream.audit.lineage import UnknownResource, trace
from medstream.audit.trail import AuditFilter, ChainReport, export_anchors, query, verify
from medstream.db import make_engine
from medstream.failures import ENVIRONMENT_ERRORS
from medstream.platform.secrets import InsecureSettings, anchor_file, anchor_key, require
from medstream.settings import Settings, get_settings

audit_app = typer.Typer(
    help="The audit trail: verify its hash chains, query it.", no_args_is_help=True
)
console = Console(stderr=True)
T = TypeVar("T")


def _actor() -> str:
    try:
        return f"user:{getpass.getuser()}"
    except (KeyError, OSError):
        return "user:unknown"


def record_command(
    action: str, details: dict[str, Any] | None = None, *, warn: bool = True
) -> None:
    """Audit a command (``action`` by the OS user) through the outbox. When PostgreSQL
    is down the command still runs and, with ``warn``, says it was not audited."""
    message = audit_message(
        actor=_actor(),
        action=action,
        correlation_id=str(uuid.uuid4()),
        details=details or {},
        dedupe_key=f"command:{uuid.uuid4()}",
    )

    async def write(conn: AsyncConnection) -> None:
        await outbox.enqueue(conn, message)

    try:
        _with_connection(write, transaction=True)
    except ENVIRONMENT_ERRORS as exc:
        if not warn:
            return
        console.print(
            f"[yellow]warning:[/yellow] `{action}` was not audited: PostgreSQL is unreachable "
            f"({type(exc).__name__}). Start the stack with `medstream up` to audit commands."
        )


def _with_connection(
    work: Callable[[AsyncConnection], Awaitable[T]], *, transaction: bool = False
) -> T:
    async def run() -> T:
        engine = make_engine(get_settings())
        try:
            if transaction:
                async with engine.begin() as conn:
                    return await work(conn)
            async with engine.connect() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    async def bounded() -> T:
        return await asyncio.wait_for(run(), timeout=120)

    return asyncio.run(bounded())


def _read(work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    try:
        return _with_connection(work)
    except ENVIRONMENT_ERRORS as exc:
        console.print(
            f"[red]error:[/red] cannot read the audit trail: PostgreSQL is unreachable "
            f"({type(exc).__name__}). Start the stack with `medstream up`, or set "
            "MEDSTREAM_DATABASE_URL."
        )
        raise typer.Exit(2) from None


def _short(value: str | None, n: int = 12) -> str:
    return "" if value is None else value[:n]


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Sign every chain head now and keep it outside PostgreSQL (the audit service
    does this on a schedule): the anchor file and medstream.audit.anchors."""
    settings = get_settings()
    _require_anchor_key(settings)
    key, file = anchor_key(settings), AnchorFile(anchor_file(settings))

    async def export(conn: AsyncConnection) -> list[dict[str, object]]:
        return await export_anchors(conn, key)

    records = _with_connection(export, transaction=True)
    file.append(records)
    record_command("audit.anchor", {"chains": len(records)})
    console.print(f"anchored {len(records)} chain head(s) in {file.path}")


@audit_app.command("verify")
def audit_verify(
    chain: list[int] = typer.Option(None, help="Only this chain (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON report instead."),
    anchors: Path | None = typer.Option(
        None, help="The signed anchor file (default: MEDSTREAM_AUDIT_ANCHOR_PATH's)."
    ),
) -> None:
    """Walk every hash chain and report tampering; exit 1 if any is found.

    Reports each changed, deleted, inserted or reordered row, and each chain that no
    longer holds its signed anchor (a tail rewritten with recomputed hashes)."""
    settings = get_settings()
    _require_anchor_key(settings)
    file = AnchorFile(anchors or anchor_file(settings))
    anchored, forged = file.every(anchor_key(settings))

    async def run(conn: AsyncConnection) -> list[ChainReport]:
        return await verify(conn, chain or None, anchored)

    reports = _read(run)
    unanchored = [r.chain for r in reports if r.rows and r.chain not in anchored]
    findings = [f for r in reports for f in r.findings]
    for problem in forged:
        findings.append(Finding(-1, Tampering.CHANGED, 0, f"anchor file: {problem}"))
    record_command("audit.verify", {"chains": len(reports), "findings": len(findings)})
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not findings,
                    "anchored_chains": len(anchored),
                    "anchor_problems": forged,
                    "unanchored_chains": unanchored,
                    "chains": [
                        {
                            "chain": r.chain,
                            "rows": r.rows,
                            "head_seq": r.head_seq,
                            "head_hash": r.head_hash,
                            "findings": [
                                {"kind": f.kind.value, "seq": f.seq, "detail": f.detail}
                                for f in r.findings
                            ],
                        }
                        for r in reports
                    ],
                },
                indent=2,
            )
        )
    else:
        table = Table("chain", "rows", "head seq", "head hash", "status")
        for r in reports:
            status = "[green]intact[/green]" if not r.findings else f"[red]{len(r.findings)}[/red]"
            table.add_row(
                str(r.chain), str(r.rows), str(r.head_seq or 0), _short(r.head_hash), status
            )
        Console().print(table)
        for f in findings:
            console.print(f"[red]{f.kind.value}[/red] chain {f.chain} seq {f.seq}: {f.detail}")
        total = sum(r.rows for r in reports)
        if unanchored:
            console.print(
                f"[yellow]warning:[/yellow] no signed anchor for chain(s) "
                f"{', '.join(map(str, unanchored))} in {file.path}: a tail rewritten with "
                "recomputed hashes would pass. Point --anchors at the audit service's "
                "anchor file, or run `medstream audit anchor`."
            )
        if findings:
            console.print(
                f"[red]audit trail tampered:[/red] {len(findings)} finding(s) in {total} rows. "
                "Preserve the database as evidence and compare with a backup or exported heads."
            )
        else:
            console.print(
                f"[green]audit trail intact:[/green] {total} rows in {len(reports)} chains"
            )
    if findings:
        raise typer.Exit(1)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no time zone; add Z or +01:00")
    return moment


@audit_app.command("query")
def audit_query(
    patient: str | None = typer.Option(None, help="Patient pseudonym (psn-…)."),
    actor: str | None = typer.Option(None, help="Service or user, e.g. results or user:ana."),
    action: str | None = typer.Option(None, help="e.g. vault.relink, message.rejected."),
    since: str | None = typer.Option(None, help="ISO 8601 time with zone, inclusive."),
    until: str | None = typer.Option(None, help="ISO 8601 time with zone, exclusive."),
    limit: int = typer.Option(200, min=1, max=100_000, help="At most this many (newest)."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines with the AuditEvent."),
) -> None:
    """Audit rows matching every filter given, oldest first."""
    selection = AuditFilter(
        patient=patient,
        actor=actor,
        action=action,
        since=_when(since),
        until=_when(until),
        limit=limit,
    )

    async def run(conn: AsyncConnection) -> list[dict[str, Any]]:
        return await query(conn, selection)

    rows = _read(run)
    record_command(
        "audit.query",
        {k: v for k, v in {"patient": patient, "actor": actor, "action": action}.items() if v},
    )
    if as_json:
        for row in rows:
            typer.echo(json.dumps(row, default=str, sort_keys=True))
        return
    table = Table("recorded", "chain:seq", "actor", "action", "outcome", "patient", "message")
    for row in rows:
        table.add_row(
            row["recorded_at"].isoformat(timespec="seconds"),
            f"{row['chain']}:{row['seq']}",
            row["actor"],
            row["action"],
            row["outcome"],
            row["patient_pseudonym"] or "",
            _short(row["message_id"], 40),
        )
    Console().print(table)
    console.print(f"{len(rows)} row(s)")


def lineage(
    resource: str = typer.Argument(..., help="A stored resource: Type/id or id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead."),
) -> None:
    """Why does the EHR have this resource? Prints its lineage with timestamps.

    From the inbound messages through de-identification and the model to the stored
    and published resource."""

    async def run(conn: AsyncConnection) -> Any:
        try:
            return await trace(conn, resource)
        except UnknownResource:
            return None

    found = _read(run)
    record_command("lineage.query", {"resource": resource})
    if found is None:
        console.print(
            f"[red]error:[/red] no stored resource {resource!r}; list them with "
            "`medstream audit query --action result.stored --json`."
        )
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(found.as_json(), indent=2))
        return
    out = Console()
    out.print(f"[bold]{found.resource}[/bold] for {found.patient_reference}")
    out.print(
        f"model {found.model} {found.model_version} (sha256 {_short(found.model_checksum)}), "
        f"from inbound message(s) {', '.join(found.inbound_message_ids)}"
    )
    table = Table("time", "actor", "step", "what")
    for step in found.steps:
        table.add_row(
            step.at.isoformat(timespec="milliseconds"), step.actor, step.action, step.summary
        )
    out.print(table)
    for gap in found.missing:
        console.print(f"[yellow]missing:[/yellow] {gap}")


def _require_anchor_key(settings: Settings) -> None:
    try:
        require(settings, "audit_anchor_key")
    except InsecureSettings as refused:
        console.print(f"[red]error:[/red] {refused}")
        raise typer.Exit(2) from None
