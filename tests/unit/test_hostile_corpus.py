"""The hostile corpus of the end-to-end tier, checked without servers where it can be:
it is large enough, every kind says what must become of it, and every kind that
ingestion must refuse is refused by ingestion's own code with exactly that code."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.ingest import DERIVE_ID, FORMAT_OF_TOPIC, ingest
from medstream.received import Received

from ..e2e.hostile import corpus, kinds

CORPUS = corpus("unit00", scale=1)
# Decided after ingestion's pure core: by the processor (the outbox's size check, the
# inbox's id check), so only the end-to-end tier can see them.
LATER = {"ingestion.too_large_encoded", "ingestion.id_conflict"}


def test_the_corpus_has_sixty_kinds_across_every_edge() -> None:
    names = [kind.name for kind in kinds()]
    assert len(names) == len(set(names)) >= 60
    for edge in ("fhir:", "hl7:", "dicom:", "headers:", "keys:"):
        assert any(n.startswith(edge) for n in names), edge
    for message in CORPUS:
        decided = message.expect_code is not None or message.family is not None
        assert decided or message.unused or message.kind, message.kind


@pytest.mark.parametrize(
    "message",
    [m for m in CORPUS if m.expect_stage == "ingestion" and m.expect_code not in LATER],
    ids=lambda m: m.kind,
)
def test_ingestion_refuses_each_kind_with_its_code(message: object) -> None:
    record = SimpleNamespace(
        topic=message.topic,  # type: ignore[attr-defined]
        partition=0,
        offset=0,
        timestamp=0,
        key=message.key,  # type: ignore[attr-defined]
        value=message.value,  # type: ignore[attr-defined]
        headers=list(message.headers or ()),  # type: ignore[attr-defined]
    )
    source_format = FORMAT_OF_TOPIC[record.topic]
    received = Received.from_record(record, DERIVE_ID[source_format], trusted=False)
    assert received.message_id == message.message_id  # type: ignore[attr-defined]
    if received.header_problem is not None:
        got = "envelope.bad_header"
    else:
        try:
            ingest(source_format, received.value, message_id="m", dicom_max_bytes=16 << 20)
            got = "accepted"
        except InvalidMessage as error:
            got = error.code
    assert got == message.expect_code  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "message",
    [m for m in CORPUS if m.expect_code is None and m.topic != "ehr.inbound.dicom"],
    ids=lambda m: m.kind,
)
def test_every_kind_that_must_get_through_is_accepted_by_ingestion(message: object) -> None:
    source_format = SourceFormat(FORMAT_OF_TOPIC[message.topic])  # type: ignore[attr-defined]
    result = ingest(source_format, message.value, message_id="m", dicom_max_bytes=16 << 20)  # type: ignore[attr-defined]
    assert bool(result.records) != message.unused  # type: ignore[attr-defined]
