"""Payload models of internal topics. Each has a JSON Schema under ``schemas/``."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditOutcome(StrEnum):
    """FHIR AuditEvent.outcome, as its code system names them."""

    SUCCESS = "0"
    MINOR_FAILURE = "4"
    SERIOUS_FAILURE = "8"
    MAJOR_FAILURE = "12"


class AuditRecord(BaseModel):
    """Who did what to which record, and how it ended. Never carries PHI.

    ``entity`` is a patient pseudonym or a message id, never an EHR identifier.
    The audit service stores these as FHIR AuditEvent rows in a hash chain.
    """

    model_config = ConfigDict(extra="forbid")

    actor: str = Field(description="The service or user that acted.")
    action: str = Field(description="A stable verb such as message.received or vault.read.")
    outcome: AuditOutcome = AuditOutcome.SUCCESS
    entity: str | None = Field(default=None, description="Patient pseudonym or message id.")
    message_id: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
