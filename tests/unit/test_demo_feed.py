"""The demo feed and the malformed inputs: each message is what it claims to be, as
ingestion's pure core judges it."""

from __future__ import annotations

import pytest

from medstream.clinical import SourceFormat
from medstream.deadletter import InvalidMessage
from medstream.demo.feed import hospital_feed
from medstream.demo.malformed import CASES, malformed_inputs
from medstream.ingest import FORMAT_OF_TOPIC, ingest

LIMIT = 16 * 1024 * 1024


def judge(topic: str, value: bytes) -> str | list[str]:
    """The dead-letter code ingestion gives, or the kinds of its records."""
    try:
        result = ingest(FORMAT_OF_TOPIC[topic], value, message_id="m", dicom_max_bytes=LIMIT)
    except InvalidMessage as error:
        return error.code
    return sorted(k.value for r in result.records for k in r.kinds)


@pytest.mark.parametrize("seed", [1, 2])
def test_every_malformed_input_gets_its_declared_code(seed: int) -> None:
    made = malformed_inputs(len(CASES) * 4 + 1, seed)
    assert len(made) == len(CASES) * 4 + 1
    assert len({value for _, value, _ in made}) == len(made), "cases must vary"
    for topic, value, code in made:
        assert judge(topic, value) == code


def test_the_feed_is_complete_and_every_message_is_what_it_says() -> None:
    feed = hospital_feed(patients=4, hours=2, every_minutes=15, malformed=12, seed=3)
    assert len({m.message_id for m in feed.messages}) == len(feed.messages)
    assert feed.count(family="monitoring") == 4 * 8
    assert feed.count(family="notes") == 4 * 2
    assert feed.count(family="imaging") == 4
    assert feed.count(malformed=True) == 12
    expected = {
        "admission": ["patient"],
        "vitals": ["vitals"],
        "note": ["document"],
        "radiology_report": ["document"],
        "radiograph": ["imaging"],
    }
    for message in feed.messages:
        judged = judge(message.topic, message.value)
        if message.expect_code:
            assert judged == message.expect_code
        else:
            assert judged == expected[message.kind], message.message_id
    assert feed.messages[0].kind == "admission"
    assert {FORMAT_OF_TOPIC[m.topic] for m in feed.messages if m.kind == "vitals"} == {
        SourceFormat.FHIR,
        SourceFormat.HL7V2,
    }


def test_a_vital_signs_message_expects_a_result_exactly_when_it_holds_something_charted() -> None:
    """Before a patient's first charting the feed's message holds no observation:
    ingestion acknowledges it as unused, so the feed must not expect a result (24
    patients include such a start, which the replica test's burst met)."""
    feed = hospital_feed(patients=24, hours=4, every_minutes=15, seed=1, run="chk")
    vitals = [m for m in feed.messages if m.kind == "vitals"]
    assert any(m.unused for m in vitals)
    for message in vitals:
        ingested = ingest(
            FORMAT_OF_TOPIC[message.topic],
            message.value,
            message_id=message.message_id,
            dicom_max_bytes=10**8,
        )
        assert bool(ingested.records) == (message.family == "monitoring"), message.message_id
        assert message.unused == (not ingested.records), message.message_id
