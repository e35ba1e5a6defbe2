"""Fuzzing the envelope of every internal topic: mutated events are either valid or
refused by validation (which the stages dead-letter with their ``*.bad_event`` code),
never another exception; and vital signs that validate never break the monitoring
worker's pure steps."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from medstream.clinical import (
    DocumentEvent,
    IdentifiedRecord,
    ImagingEvent,
    ImagingResult,
    Kind,
    MonitoringResult,
    NoteLabel,
    NotesResult,
    PatientEvent,
    SourceFormat,
    Vital,
    VitalsEvent,
    VitalSign,
)
from medstream.envelope import Envelope
from medstream.events import AuditRecord
from medstream.monitoring import model as monitoring
from medstream.monitoring.news2 import news2
from medstream.topics import ALL_TOPICS

from .test_fuzz_parsers import mutate

WHEN = datetime(2026, 3, 14, 10, tzinfo=UTC)
COMMON = {"model": "m", "model_version": "1", "model_checksum": "c" * 64}
EXAMPLES: dict[type[BaseModel], BaseModel] = {
    IdentifiedRecord: IdentifiedRecord(
        format=SourceFormat.HL7V2,
        ehr_patient_id="p1",
        kinds=[Kind.VITALS],
        source="MSH|^~\\&|",
        inbound_message_id="m1",
    ),
    PatientEvent: PatientEvent(patient="psn-1", age_years=40, sex="female", postal_code="021"),
    VitalsEvent: VitalsEvent(
        patient="psn-1",
        vitals=[
            VitalSign(vital=Vital.HEART_RATE, loinc="8867-4", value=88, observed_at=WHEN),
            VitalSign(vital=Vital.CONSCIOUSNESS, loinc="80288-4", text="A", observed_at=WHEN),
        ],
    ),
    DocumentEvent: DocumentEvent(patient="psn-1", document_kind="note", text="Chest clear."),
    ImagingEvent: ImagingEvent(patient="psn-1", sop_instance_uid="1.2.3", dicom_base64="AA=="),
    MonitoringResult: MonitoringResult(
        patient="psn-1",
        scored_at=WHEN,
        risk=0.1,
        horizon_hours=12,
        news2=1,
        news2_risk="low",
        news2_complete=False,
        explanation={"heart_rate": 1.0},
        inbound_message_ids=["m1"],
        **COMMON,
    ),
    ImagingResult: ImagingResult(
        patient="psn-1",
        sop_instance_uid="1.2.3",
        labels={"Cardiomegaly": 0.2},
        explained="Cardiomegaly",
        heatmap_png_base64="AA==",
        inbound_message_ids=["m1"],
        **COMMON,
    ),
    NotesResult: NotesResult(
        patient="psn-1",
        document_kind="radiology_report",
        labels={"Edema": NoteLabel(status="absent", probability=0.01)},
        explanation=[],
        inbound_message_ids=["m1"],
        **COMMON,
    ),
    AuditRecord: AuditRecord(actor="deid", action="deid.completed", details={"n": 1}),
}
PAYLOADS = sorted({t.payload for t in ALL_TOPICS if t.payload is not None}, key=str)


def envelope(payload: BaseModel) -> bytes:
    return (
        Envelope[Any](
            event_type="t.v1",
            schema_version=1,
            correlation_id="c1",
            occurred_at=WHEN,
            payload=payload,
        )
        .model_dump_json()
        .encode()
    )


JSONISH = st.sampled_from(
    [b"", b"null", b"1e999", b"-1", b"NaN", b'"x"', b"[]", b"{}", b'"\\u0000"', b"9" * 400,
     b'"\\ud800"', b"true", b"0001-01-01T00:00:00Z", b'"9999-12-31T23:59:59Z"']
)  # fmt: skip
EDITS = st.lists(
    st.tuples(st.integers(0, 10**5), st.integers(0, 12), st.one_of(st.binary(max_size=8), JSONISH)),
    min_size=1,
    max_size=5,
)
EXAMPLE_COUNT = int(os.environ.get("MEDSTREAM_FUZZ_EXAMPLES", "150"))


def test_every_internal_payload_has_an_example() -> None:
    assert set(PAYLOADS) <= set(EXAMPLES)


@settings(
    max_examples=EXAMPLE_COUNT * 4,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(payload=st.sampled_from(PAYLOADS), edits=EDITS)
def test_mutated_envelopes_are_valid_or_refused_by_validation(
    payload: type[BaseModel], edits: list[tuple[int, int, bytes]]
) -> None:
    raw = mutate(envelope(EXAMPLES[payload]), edits)
    try:
        event = Envelope[payload].model_validate_json(raw)  # type: ignore[valid-type]
    except ValidationError:
        return
    if isinstance(event.payload, VitalsEvent):
        times, sets = monitoring.observation_sets(monitoring.coded(event.payload.vitals))
        for observations in sets:
            news2(observations)
        assert len(times) == len(sets)
