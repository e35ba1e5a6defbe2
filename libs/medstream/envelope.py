"""The envelope that wraps every internal event, defined once for all services."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

PayloadT = TypeVar("PayloadT", bound=BaseModel)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A fresh event id (UUID4 text)."""
    return str(uuid.uuid4())


class Envelope(BaseModel, Generic[PayloadT]):
    """An internal event: identity, causality, timing and a typed payload.

    ``correlation_id`` is carried unchanged from the inbound message to the last
    outbound resource; ``causation_id`` is the id of the event that caused this one.
    ``patient_pseudonym`` is set once de-identification has assigned one, and is the
    only patient reference allowed downstream of it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(default_factory=new_event_id)
    event_type: str
    schema_version: int = Field(ge=1)
    correlation_id: str
    causation_id: str | None = None
    occurred_at: datetime
    produced_at: datetime = Field(default_factory=utc_now)
    patient_pseudonym: str | None = None
    payload: PayloadT
