"""`medstream db prune` bounds the inbox and the outbox without forgetting too early:
an inbox row lives for the dedup window and never less than its topic's retention plus
a day (forever for a topic kept forever); an outbox row only once sent, never while
unsent or quarantined (medstream.platform.retention)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from medstream.cli import app
from medstream.platform.retention import prune
from medstream.settings import Settings

WINDOW_DAYS = 14.0

# (topic, days since processed, pruned?): the inbound topics keep records 7 days,
# the audit topic 30, the anchors forever.
INBOX = {
    "inbound-old": ("ehr.inbound.fhir", 20, True),
    "inbound-in-window": ("ehr.inbound.fhir", 10, False),
    "audit-within-its-retention": ("medstream.audit", 20, False),
    "audit-past-its-retention": ("medstream.audit", 40, True),
    "anchors-kept-forever": ("medstream.audit.anchors", 400, False),
    "unknown-topic-old": ("test.retention.elsewhere", 20, True),
}
# (days since created, days since sent or None, quarantined?, pruned?)
OUTBOX = {
    "sent-old": (20, 19, False, True),
    "sent-recently": (3, 2, False, False),
    "created-old-sent-recently": (20, 2, False, False),
    "never-sent": (20, None, False, False),
    "quarantined": (20, None, True, False),
}


@pytest.fixture
async def rows(
    admin_engine: AsyncEngine, unique: Callable[[str], str]
) -> AsyncIterator[tuple[str, Callable[[str], str]]]:
    """The rows above, back-dated, in a consumer group and with ids of the test's own;
    whatever is left is deleted after the test."""
    group = unique("retention")
    ident = unique
    async with admin_engine.begin() as conn:
        for name, (topic, days, _) in INBOX.items():
            await conn.execute(
                text(
                    'INSERT INTO inbox (consumer_group, message_id, topic, partition, "offset",'
                    " outcome, processed_at) VALUES (:g, :m, :t, 0, 0, 'processed',"
                    " now() - make_interval(days => :d))"
                ),
                {"g": group, "m": ident(name), "t": topic, "d": days},
            )
        for name, (created, sent, quarantined, _) in OUTBOX.items():
            await conn.execute(
                text(
                    "INSERT INTO outbox (message_id, topic, value, created_at, sent_at,"
                    " quarantined_at, quarantine_reason) VALUES (:m, 'test.retention', '',"
                    " now() - make_interval(days => :c),"
                    " now() - make_interval(days => CAST(:s AS int)),"
                    " CASE WHEN :q THEN now() END, CASE WHEN :q THEN 'test' END)"
                ),
                {"m": ident(name), "c": created, "s": sent, "q": quarantined},
            )
    yield group, ident
    async with admin_engine.begin() as conn:
        await conn.execute(text("DELETE FROM inbox WHERE consumer_group = :g"), {"g": group})
        await conn.execute(
            text("DELETE FROM outbox WHERE message_id = ANY(:m)"),
            {"m": [ident(name) for name in OUTBOX]},
        )


async def _left(
    engine: AsyncEngine, group: str, ident: Callable[[str], str]
) -> tuple[set[str], set[str]]:
    async with engine.connect() as conn:
        inbox = set(
            (
                await conn.scalars(
                    text("SELECT message_id FROM inbox WHERE consumer_group = :g"), {"g": group}
                )
            ).all()
        )
        outbox = set(
            (
                await conn.scalars(
                    text("SELECT message_id FROM outbox WHERE message_id = ANY(:m)"),
                    {"m": [ident(name) for name in OUTBOX]},
                )
            ).all()
        )
    return (
        {name for name in INBOX if ident(name) in inbox},
        {name for name in OUTBOX if ident(name) in outbox},
    )


async def test_prune_deletes_only_what_is_past_its_horizon(
    admin_engine: AsyncEngine, rows: tuple[str, Callable[[str], str]]
) -> None:
    group, ident = rows
    counted = await prune(admin_engine, WINDOW_DAYS, dry_run=True)
    assert counted.inbox >= 3
    assert counted.outbox >= 1
    assert await _left(admin_engine, group, ident) == (set(INBOX), set(OUTBOX))

    seen: list[tuple[str, int]] = []
    # One row per transaction: the loop over batches runs until a short batch.
    done = await prune(
        admin_engine, WINDOW_DAYS, batch=1, progress=lambda t, n: seen.append((t, n))
    )
    assert done.inbox >= 3
    assert done.outbox >= 1
    assert [n for table, n in seen if table == "inbox"] == list(range(1, done.inbox + 1))
    inbox, outbox = await _left(admin_engine, group, ident)
    assert inbox == {name for name, (_, _, pruned) in INBOX.items() if not pruned}
    assert outbox == {name for name, (*_, pruned) in OUTBOX.items() if not pruned}


def test_the_command_counts_in_a_dry_run(
    settings: Settings, rows: tuple[str, Callable[[str], str]]
) -> None:
    result = CliRunner().invoke(app, ["db", "prune", "--dry-run", "--window-days", "14"])
    assert result.exit_code == 0, result.output
    assert "would delete" in result.output
    assert "older than 14 days" in result.output


async def test_a_window_under_a_day_is_refused(admin_engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="at least one day"):
        await prune(admin_engine, 0.5)
