from datetime import UTC, datetime

import pytest
from pydantic import BaseModel, ValidationError

from medstream.envelope import Envelope


class Payload(BaseModel):
    n: int


def make(**overrides: object) -> Envelope[Payload]:
    fields: dict[str, object] = {
        "event_type": "test.event",
        "schema_version": 1,
        "correlation_id": "corr-1",
        "occurred_at": datetime(2026, 1, 2, tzinfo=UTC),
        "payload": Payload(n=1),
    }
    fields.update(overrides)
    return Envelope[Payload].model_validate(fields)


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError):
        make(surprise="x")


def test_schema_version_starts_at_one() -> None:
    with pytest.raises(ValidationError):
        make(schema_version=0)


def test_round_trip_through_json() -> None:
    event = make()
    again = Envelope[Payload].model_validate_json(event.model_dump_json())
    assert again == event
