"""PostgreSQL through SQLAlchemy 2 async (asyncpg): engine, tables and unit of work.

The schema is owned by Alembic migrations (``medstream db upgrade``); the tables here
describe it for queries. Services connect as the ``medstream`` role, which has only
the privileges each migration grants it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Index,
    LargeBinary,
    MetaData,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from medstream.platform.secrets import database_url
from medstream.settings import Settings


class Base(DeclarativeBase):
    """Declarative base of MedStream's tables."""

    metadata = MetaData(
        naming_convention={
            "pk": "pk_%(table_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
        }
    )


class InboxRow(Base):
    """One processed inbound message per consumer group: the idempotency key.

    A redelivered message finds its key here and is skipped, so at-least-once delivery
    has an exactly-once effect.
    """

    __tablename__ = "inbox"

    # For `medstream db prune` (migration 0013).
    __table_args__ = (Index("ix_inbox_processed_at", "processed_at", postgresql_using="brin"),)

    consumer_group: Mapped[str] = mapped_column(String(200), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(300), primary_key=True)
    topic: Mapped[str] = mapped_column(String(250))
    partition: Mapped[int]
    offset: Mapped[int] = mapped_column(BigInteger)
    outcome: Mapped[str] = mapped_column(String(20))
    # SHA-256 of the message's value: a reused id with other content is a conflict.
    content_sha256: Mapped[str | None] = mapped_column(String(64))
    processed_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class OutboxRow(Base):
    """A message a service will publish, written in the same transaction as its effect."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL AND quarantined_at IS NULL"),
        ),
        Index(
            "ix_outbox_quarantined",
            "quarantined_at",
            postgresql_where=text("quarantined_at IS NOT NULL"),
        ),
        # For `medstream db prune` (migration 0013).
        Index("ix_outbox_created_at", "created_at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(300), unique=True)
    topic: Mapped[str] = mapped_column(String(250))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Set when the broker refused the row for good (too large, invalid, not authorised).
    quarantined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    quarantine_reason: Mapped[str | None] = mapped_column(String(100))


def make_engine(settings: Settings, *, admin: bool = False) -> AsyncEngine:
    """An async engine for the service role, or the owner role with ``admin=True``."""
    url = settings.database_admin_url.get_secret_value() if admin else database_url(settings)
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=5,
        # Keep bind parameters (message contents) out of SQLAlchemy's error texts.
        hide_parameters=True,
    )


@asynccontextmanager
async def unit_of_work(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    async with engine.begin() as conn:
        yield conn
