"""How long the inbox and the outbox remember what they did, and the pruning that keeps
them bounded.

Both tables grow by a row per message per stage: at a few hundred messages a second,
tens of millions of rows a day. Neither may forget too early:
- an **inbox** row is what makes a redelivered message a no-op. Kafka can redeliver a
  message while its topic still holds it (an offset reset, a replica that restarts
  behind), and an EHR may resend a message id. So a row is kept for the dedup window
  (``MEDSTREAM_DEDUP_WINDOW_DAYS``) and never less than its topic's retention plus a
  day; a row from a topic that keeps records forever is never pruned. A message id
  seen again after that is processed again, as a new message.
- an **outbox** row is pruned only once it was sent, and after the same window: its
  unique message id is the second guard against a repeated effect, and `medstream
  lineage` reads its ``sent_at``. A quarantined row is never pruned: it waits for an
  operator.

Pruning runs as the schema's owner (``medstream db prune``), in short transactions of
at most ``batch`` rows, so it never holds locks the services wait on for long. The
services keep only the privileges they had: none of them may delete a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.topics import ALL_TOPICS, Topic

DAY_S = 86_400.0


@dataclass(frozen=True)
class Pruned:
    """Rows deleted (or, in a dry run, that would be)."""

    inbox: int
    outbox: int


def inbox_keep_s(topic: Topic, window_days: float) -> float | None:
    """Seconds an inbox row from ``topic`` is kept; ``None``: forever."""
    if topic.retention_ms < 0:
        return None
    return max(window_days * DAY_S, topic.retention_ms / 1000 + DAY_S)


def _horizons(window_days: float) -> tuple[list[str], list[float], list[str]]:
    kept, seconds, forever = [], [], []
    for topic in ALL_TOPICS:
        keep = inbox_keep_s(topic, window_days)
        if keep is None:
            forever.append(topic.name)
        else:
            kept.append(topic.name)
            seconds.append(keep)
    return kept, seconds, forever


# An inbox row's horizon is its topic's, or the window for a topic outside the registry.
# Every horizon is at least the window, and a row is sent after it is created, so each
# query first bounds the time column that migration 0013's BRIN index covers.
_INBOX_DUE = """
    SELECT i.ctid FROM inbox i
    LEFT JOIN unnest(CAST(:topics AS text[]), CAST(:keep_s AS float8[])) AS h(topic, keep_s)
        ON h.topic = i.topic
    WHERE i.processed_at < now() - make_interval(secs => :window_s)
      AND i.topic <> ALL(CAST(:forever AS text[]))
      AND i.processed_at < now() - make_interval(secs => coalesce(h.keep_s, :window_s))
"""
_OUTBOX_DUE = """
    SELECT o.id FROM outbox o
    WHERE o.created_at < now() - make_interval(secs => :window_s)
      AND o.sent_at IS NOT NULL AND o.quarantined_at IS NULL
      AND o.sent_at < now() - make_interval(secs => :window_s)
"""
# Each table's (count, delete), built from the constants above only.
_STATEMENTS = {
    "inbox": (
        f"SELECT count(*) FROM ({_INBOX_DUE}) AS due",  # noqa: S608
        f"DELETE FROM inbox WHERE ctid = ANY(ARRAY({_INBOX_DUE} LIMIT :n))",  # noqa: S608
    ),
    "outbox": (
        f"SELECT count(*) FROM ({_OUTBOX_DUE}) AS due",  # noqa: S608
        f"DELETE FROM outbox WHERE id = ANY(ARRAY({_OUTBOX_DUE} LIMIT :n))",  # noqa: S608
    ),
}


async def prune(
    engine: AsyncEngine,
    window_days: float,
    *,
    batch: int = 10_000,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> Pruned:
    """Delete the inbox and outbox rows past their horizon (see the module), ``batch``
    rows per transaction; ``dry_run`` only counts them. ``engine`` must connect as the
    tables' owner (row level security hides other roles' outbox rows from the rest)."""
    if window_days < 1:
        raise ValueError("the dedup window must be at least one day")
    topics, keep_s, forever = _horizons(window_days)
    window_s = window_days * DAY_S
    params: dict[str, dict[str, Any]] = {
        "inbox": {"topics": topics, "keep_s": keep_s, "forever": forever, "window_s": window_s},
        "outbox": {"window_s": window_s},
    }
    counts: dict[str, int] = {}
    for table, (count, delete) in _STATEMENTS.items():
        total = 0
        if dry_run:
            async with engine.connect() as conn:
                total = int(await conn.scalar(text(count), params[table]) or 0)
        else:
            while True:
                async with engine.begin() as conn:
                    done = await conn.execute(text(delete), {**params[table], "n": batch})
                deleted = done.rowcount
                total += deleted
                if progress is not None and deleted:
                    progress(table, total)
                if deleted < batch:
                    break
        counts[table] = total
    return Pruned(inbox=counts["inbox"], outbox=counts["outbox"])
