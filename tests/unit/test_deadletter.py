import pytest

from medstream.deadletter import (
    DeadLetterLimiter,
    DeadLetterRateExceeded,
    InvalidMessage,
    dead_letter_headers,
)
from medstream.received import Received
from medstream.topics import dead_letter_topic

CONTRACT_HEADERS = {
    "error.stage",
    "error.code",
    "error.message",
    "error.class",
    "original.topic",
    "original.partition",
    "original.offset",
    "original.timestamp",
}


def received() -> Received:
    return Received(
        topic="ehr.inbound.hl7v2",
        partition=3,
        offset=42,
        timestamp=1700000000000,
        key=b"pat-1",
        value=b"raw",
        headers=(("message-id", b"m-1"),),
        message_id="m-1",
    )


def test_headers_carry_the_contract_fields_and_keep_the_originals() -> None:
    headers = dict(
        dead_letter_headers(received(), InvalidMessage("hl7.no_msh", "No MSH."), "ingestion")
    )
    assert headers.keys() >= CONTRACT_HEADERS
    assert headers["error.code"] == b"hl7.no_msh"
    assert headers["error.stage"] == b"ingestion"
    assert headers["error.class"] == b"InvalidMessage"
    assert headers["original.partition"] == b"3"
    assert headers["original.offset"] == b"42"
    assert headers["message-id"] == b"m-1"


def test_dead_letter_topic_names() -> None:
    assert dead_letter_topic("ehr.inbound.fhir") == "ehr.inbound.fhir.dlt"
    assert dead_letter_topic("internal.something") == "internal.something.dlt"


def test_limiter_allows_occasional_invalid_messages() -> None:
    limiter = DeadLetterLimiter(max_ratio=0.5, window=10, max_consecutive=3)
    for _ in range(50):
        limiter.record_valid()
        limiter.admit_invalid()


def test_limiter_stops_a_run_of_invalid_messages() -> None:
    limiter = DeadLetterLimiter(max_ratio=1.0, window=100, max_consecutive=3)
    for _ in range(3):
        limiter.admit_invalid()
    with pytest.raises(DeadLetterRateExceeded):
        limiter.admit_invalid()


def test_limiter_stops_a_high_ratio_once_the_window_is_full() -> None:
    limiter = DeadLetterLimiter(max_ratio=0.3, window=10, max_consecutive=100)
    for _ in range(6):
        limiter.record_valid()
    limiter.admit_invalid()
    limiter.admit_invalid()
    limiter.record_valid()
    limiter.admit_invalid()  # 3 invalid in the last 10: at the cap, allowed
    with pytest.raises(DeadLetterRateExceeded):
        limiter.admit_invalid()  # 4 in the last 10: over it


def test_a_tripped_limiter_holds_for_its_cool_down_then_resumes() -> None:
    now = [1000.0]
    limiter = DeadLetterLimiter(
        max_ratio=1.0, window=100, max_consecutive=2, cooldown_s=60, clock=lambda: now[0]
    )
    limiter.admit_invalid()
    limiter.admit_invalid()
    with pytest.raises(DeadLetterRateExceeded, match="resumes in 60 s"):
        limiter.admit_invalid()
    now[0] += 59
    with pytest.raises(DeadLetterRateExceeded, match="resumes in 1 s"):
        limiter.admit_invalid()  # still cooling down: even one more is refused
    now[0] += 1
    limiter.admit_invalid()  # a fresh window: a short run is dead-lettered again
    limiter.admit_invalid()
    with pytest.raises(DeadLetterRateExceeded):
        limiter.admit_invalid()  # and the cap trips again, for another cool-down


def test_without_a_cool_down_a_tripped_limiter_holds_until_restart() -> None:
    now = [0.0]
    limiter = DeadLetterLimiter(
        max_ratio=1.0, window=100, max_consecutive=1, cooldown_s=0, clock=lambda: now[0]
    )
    limiter.admit_invalid()
    for _ in range(3):
        with pytest.raises(DeadLetterRateExceeded, match="restart the service"):
            limiter.admit_invalid()
        now[0] += 86_400


def test_a_valid_message_resets_the_run() -> None:
    limiter = DeadLetterLimiter(max_ratio=1.0, window=100, max_consecutive=2)
    limiter.admit_invalid()
    limiter.admit_invalid()
    limiter.record_valid()
    limiter.admit_invalid()
