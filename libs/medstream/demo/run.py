"""The hospital demo: replay a synthetic feed through the running stack, wait until
every message has an outcome, and summarise what happened.

The CLI (``medstream demo``) starts the stack first; this module does the rest, and
the end-to-end tests call the same functions.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.audit.trail import ChainReport, verify
from medstream.demo.feed import Feed, FeedMessage
from medstream.demo.ledger import Outcome, outcomes
from medstream.deployment import CONSUMER_GROUPS
from medstream.kafka import consumer_lag, make_producer
from medstream.received import MESSAGE_ID_HEADER, SOURCE_SYSTEM_HEADER
from medstream.settings import Settings

GROUPS = CONSUMER_GROUPS
Advance = Callable[[int], None]


async def publish(
    settings: Settings, messages: Sequence[FeedMessage], advance: Advance
) -> dict[str, datetime]:
    """Send every message with its ``message-id``; return when each was acknowledged."""
    producer = make_producer(settings)
    await producer.start()
    sent: dict[str, datetime] = {}
    try:
        window: list[tuple[str, asyncio.Future[Any]]] = []
        for message in messages:
            key = message.key.encode() if isinstance(message.key, str) else message.key
            headers = (
                list(message.headers)
                if message.headers is not None
                else [
                    (MESSAGE_ID_HEADER, message.message_id.encode()),
                    (SOURCE_SYSTEM_HEADER, b"medstream-demo"),
                ]
            )
            future = await producer.send(
                message.topic, value=message.value, key=key, headers=headers
            )
            window.append((message.message_id, future))
            if len(window) >= 200:
                await _settle(window, sent, advance)
        await _settle(window, sent, advance)
    finally:
        await producer.stop()
    return sent


async def _settle(
    window: list[tuple[str, asyncio.Future[Any]]], sent: dict[str, datetime], advance: Advance
) -> None:
    await asyncio.gather(*(f for _, f in window))
    now = datetime.now(UTC)
    for message_id, _ in window:
        sent[message_id] = now
    advance(len(window))
    window.clear()


def settled(message: FeedMessage, outcome: Outcome) -> bool:
    """Whether ``message`` has reached an end, whichever it is."""
    if outcome.ends():
        return True
    if message.unused:
        return outcome.received
    return message.family is None and message.expect_code is None and outcome.deidentified


async def wait_for_outcomes(
    engine: AsyncEngine,
    feed: Feed,
    *,
    timeout_s: float,
    advance: Advance,
    poll_s: float = 2.0,
) -> dict[str, Outcome]:
    """Poll the ledger until every message has settled or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    by_id = {m.message_id: m for m in feed.messages}
    done: set[str] = set()
    found: dict[str, Outcome] = {}
    while True:
        async with engine.connect() as conn:
            found = await outcomes(conn, list(by_id))
        now_done = {i for i, o in found.items() if settled(by_id[i], o)}
        advance(len(now_done - done))
        done = now_done
        if len(done) == len(by_id) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(poll_s)


@dataclass
class Summary:
    """What the demo reports, and whether it all adds up."""

    stages: dict[str, int]
    dead_letters: dict[str, int]
    latency_s: dict[str, dict[str, float]]
    top_risk: list[dict[str, Any]]
    chains: list[ChainReport]
    lag: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def check(feed: Feed, found: dict[str, Outcome]) -> list[str]:
    """Every way the outcomes differ from what the feed expects: one end per message,
    the right dead-letter code, a result from the right family."""
    problems = []
    for message in feed.messages:
        outcome = found[message.message_id]
        ends = outcome.ends()
        if message.expect_code is not None:
            stages = {stage for stage, _ in outcome.rejected}
            if ends != [f"dead_letter:{message.expect_code}"] or (
                message.expect_stage is not None and stages != {message.expect_stage}
            ):
                problems.append(
                    f"{message.message_id} ({message.kind}): expected {message.expect_code} "
                    f"from {message.expect_stage or 'any stage'}, got {ends} from {sorted(stages)}"
                )
        elif message.unused:
            if ends or not outcome.received or outcome.deidentified:
                problems.append(
                    f"{message.message_id} ({message.kind}): expected unused, got {ends}"
                )
        elif message.family is not None:
            if len(ends) != 1 or ends[0] not in (f"result:{message.family}", "not_applicable"):
                problems.append(
                    f"{message.message_id} ({message.kind}): expected a {message.family} result, "
                    f"got {ends}"
                )
        elif ends or not outcome.deidentified:
            problems.append(
                f"{message.message_id} ({message.kind}): expected de-identification only, "
                f"got {ends}"
            )
    return problems


async def summarise(
    settings: Settings,
    engine: AsyncEngine,
    feed: Feed,
    found: dict[str, Outcome],
    sent: dict[str, datetime],
) -> Summary:
    """Counts, latencies, the highest-risk patients, the audit chains and the lag."""
    stages: Counter[str] = Counter()
    dead: Counter[str] = Counter()
    latencies: dict[str, list[float]] = {}
    for message in feed.messages:
        outcome = found[message.message_id]
        stages["sent"] += 1
        stages["received by ingestion"] += outcome.received
        stages["de-identified"] += outcome.deidentified
        for model, first in outcome.results.items():
            stages[f"{model} results stored"] += 1
            if message.message_id in sent:
                latencies.setdefault(model, []).append(
                    (first - sent[message.message_id]).total_seconds()
                )
        stages["not applicable (imaging)"] += outcome.not_applicable
        for stage, code in outcome.rejected:
            stages[f"dead-lettered at {stage}"] += 1
            dead[code] += 1
    latency = {
        model: {
            "n": float(len(values)),
            **{f"p{q}": float(np.percentile(values, q)) for q in (50, 95, 99)},
        }
        for model, values in sorted(latencies.items())
    }
    async with engine.connect() as conn:
        top = await _top_risk(conn, [f"Patient/{p}" for p in feed.patients])
    async with engine.connect() as conn:
        chains = await verify(conn)
    lag = await consumer_lag(settings, GROUPS)
    summary = Summary(dict(stages), dict(dead), latency, top, chains, lag)
    summary.problems = check(feed, found)
    if any(r.findings for r in chains):
        summary.problems.append("audit verify found tampering")
    if any(lag.values()):
        summary.problems.append(f"consumer lag is not 0: {lag}")
    return summary


async def _top_risk(conn: Any, patients: list[str], n: int = 10) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            "SELECT DISTINCT ON (r.ehr_patient_reference) r.ehr_patient_reference AS patient,"
            " (r.resource->'prediction'->0->>'probabilityDecimal')::float AS risk,"
            " r.resource->>'occurrenceDateTime' AS at,"
            " (o.resource->>'valueInteger')::int AS news2"
            " FROM fhir_resource r JOIN fhir_resource o"
            "   ON o.id = split_part(r.resource->'basis'->0->>'reference', '/', 2)"
            " WHERE r.resource_type = 'RiskAssessment' AND r.ehr_patient_reference = ANY(:p)"
            " ORDER BY r.ehr_patient_reference, r.resource->>'occurrenceDateTime' DESC"
        ),
        {"p": patients},
    )
    latest = [dict(row._mapping) for row in rows]
    return sorted(latest, key=lambda r: -r["risk"])[:n]


async def run_demo(
    settings: Settings, feed: Feed, *, timeout_s: float, console: Any, via_gateways: bool = False
) -> bool:
    """Replay ``feed`` with progress bars (to the inbound topics, or ``via_gateways``:
    over MLLP, DICOM and HTTP), wait for every outcome, print the summary; True when
    every message ended as expected, the lag is 0 and the audit verifies."""
    from rich.progress import (  # noqa: PLC0415  (the CLI's dependency, not the services')
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from medstream.db import make_engine  # noqa: PLC0415

    if via_gateways:
        from medstream.demo.via_gateways import rekeyed  # noqa: PLC0415

        feed = rekeyed(feed)
    engine = make_engine(settings)
    columns = (TextColumn("{task.description:<9}"), BarColumn(), MofNCompleteColumn())
    try:
        with Progress(*columns, TimeElapsedColumn(), console=console) as progress:
            replay = progress.add_task("replay", total=len(feed.messages))
            settle = progress.add_task("outcomes", total=len(feed.messages))
            waiting = asyncio.create_task(
                wait_for_outcomes(
                    engine,
                    feed,
                    timeout_s=timeout_s,
                    advance=lambda n: progress.advance(settle, n),
                )
            )
            advance = lambda n: progress.advance(replay, n)  # noqa: E731
            if via_gateways:
                from medstream.demo.via_gateways import send_via_gateways  # noqa: PLC0415

                sent = (await send_via_gateways(settings, feed.messages, advance)).at
            else:
                sent = await publish(settings, feed.messages, advance)
            found = await waiting
        for _ in range(30):  # the last commits of each group land a moment after the effect
            if not any((await consumer_lag(settings, GROUPS)).values()):
                break
            await asyncio.sleep(1)
        summary = await summarise(settings, engine, feed, found, sent)
    finally:
        await engine.dispose()
    print_summary(summary, console)
    return summary.ok


def print_summary(summary: Summary, console: Any) -> None:
    """The demo's report: stages, dead letters, latency, risk, audit, lag."""
    from rich.table import Table  # noqa: PLC0415

    stages = Table("stage", "messages", title="Messages per stage")
    for stage, count in summary.stages.items():
        stages.add_row(stage, str(count))
    dead = Table("code", "messages", title="Dead letters per code")
    for code, count in sorted(summary.dead_letters.items()):
        dead.add_row(code, str(count))
    latency = Table("model", "results", "p50 s", "p95 s", "p99 s", title="End-to-end latency")
    for model, values in summary.latency_s.items():
        latency.add_row(
            model, f"{values['n']:.0f}", *(f"{values[p]:.2f}" for p in ("p50", "p95", "p99"))
        )
    risk = Table(
        "patient", "model risk (12 h)", "NEWS2", "at", title="Highest-risk patients, last score"
    )
    for row in summary.top_risk:
        risk.add_row(row["patient"], f"{row['risk']:.3f}", str(row["news2"]), row["at"])
    for table in (stages, dead, latency, risk):
        console.print(table)
    rows = sum(r.rows for r in summary.chains)
    findings = sum(len(r.findings) for r in summary.chains)
    verdict = "[green]intact[/green]" if not findings else f"[red]{findings} finding(s)[/red]"
    console.print(f"audit verify: {verdict}, {rows} rows in {len(summary.chains)} chains")
    console.print(f"consumer lag: {sum(summary.lag.values())} ({len(summary.lag)} groups)")
    for problem in summary.problems[:20]:
        console.print(f"[red]problem:[/red] {problem}")
    if len(summary.problems) > 20:
        console.print(f"[red]… and {len(summary.problems) - 20} more[/red]")
    console.print(
        "[green]demo passed: every message has exactly one outcome[/green]"
        if summary.ok
        else "[red]demo failed[/red]"
    )
