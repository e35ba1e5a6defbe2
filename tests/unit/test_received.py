import os
import unicodedata
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medstream.received import MAX_MESSAGE_ID_LENGTH, Received, message_id_for


def test_header_wins_over_content_and_hash() -> None:
    headers = ((("message-id", b" abc-1 ")),)
    assert message_id_for(b"x", headers, lambda _: "derived") == "abc-1"


def test_derived_id_when_header_missing_or_blank_is_hashed() -> None:
    """Content ids can hold the EHR patient id, so only their hash is kept."""
    got = message_id_for(b"x", (("message-id", b"  "),), lambda _: "fhir:Patient/12345")
    assert got.startswith("fhir:sha256:")
    assert "12345" not in got
    assert got == message_id_for(b"other bytes", (), lambda _: "fhir:Patient/12345")


def test_content_hash_when_nothing_else() -> None:
    first = message_id_for(b"same bytes", ())
    assert first.startswith("sha256:")
    assert first == message_id_for(b"same bytes", ())
    assert first != message_id_for(b"other bytes", ())


def test_deriver_that_raises_falls_back_to_hash() -> None:
    def broken(_: bytes) -> str:
        raise ValueError("unparsable")

    assert message_id_for(b"x", (), broken).startswith("sha256:")


def test_overlong_ids_are_hashed_stably() -> None:
    long_id = "a" * (MAX_MESSAGE_ID_LENGTH + 1)
    got = message_id_for(b"", (("message-id", long_id.encode()),))
    assert got.startswith("sha256:")
    assert got == message_id_for(b"other", (("message-id", long_id.encode()),))


def test_from_record_keeps_coordinates_and_headers() -> None:
    record = SimpleNamespace(
        topic="t",
        partition=2,
        offset=7,
        timestamp=123,
        key=b"k",
        value=b"v",
        headers=[("source-system", b"epic")],
    )
    received = Received.from_record(record)
    assert (received.topic, received.partition, received.offset) == ("t", 2, 7)
    assert received.header("source-system") == "epic"
    assert received.header("missing") is None
    assert received.message_id.startswith("sha256:")


def wrap(
    headers: list[tuple[str, bytes]], value: bytes = b"v", *, trusted: bool = True
) -> Received:
    record = SimpleNamespace(
        topic="t", partition=0, offset=1, timestamp=1, key=None, value=value, headers=headers
    )
    return Received.from_record(record, trusted=trusted)


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("message-id", b"\xff\xfeid")], "not valid UTF-8"),
        ([("message-id", b"id\x00x")], "control characters"),
        ([("message-id", b"MRN-1"), ("message-id", b"MRN-2")], "more than once"),
        ([("source-system", b"\xc3")], "not valid UTF-8"),
        ([("source-system", b"x" * 129)], "over its limit"),
        ([("source-system", b"epic\r\nlog-injection")], "control characters"),
    ],
)
def test_unusable_headers_are_named_never_quoted(
    headers: list[tuple[str, bytes]], why: str
) -> None:
    received = wrap(headers)
    assert received.header_problem is not None
    assert why in received.header_problem
    for _, raw in headers:
        assert raw.decode("latin-1") not in received.header_problem


def test_an_unreadable_message_id_gives_a_stable_safe_key() -> None:
    first = wrap([("message-id", b"\xffid")], b"one")
    again = wrap([("message-id", b"\xffid")], b"two")
    assert first.message_id == again.message_id
    assert first.message_id.startswith("sha256:")


def test_the_same_id_repeated_with_the_same_value_is_fine() -> None:
    received = wrap([("message-id", b"abc"), ("message-id", b"abc")])
    assert received.header_problem is None
    assert received.message_id == "abc"


def test_internal_headers_are_ignored_where_producers_are_outside_medstream() -> None:
    headers = [("inbound-message-id", b"someone-else"), ("correlation-id", b"c-1")]
    inbound = wrap(headers, trusted=False)
    assert inbound.header("inbound-message-id") is None
    assert inbound.header("correlation-id") is None
    assert inbound.ignored_headers == ["correlation-id", "inbound-message-id"]
    internal = wrap(headers)
    assert internal.header("inbound-message-id") == "someone-else"
    assert internal.ignored_headers == []


def test_a_conflicting_record_gets_a_key_of_its_own() -> None:
    one, two = wrap([("message-id", b"m")], b"one"), wrap([("message-id", b"m")], b"two")
    assert one.as_conflict().message_id != two.as_conflict().message_id
    assert one.as_conflict().message_id.startswith("m#conflict:")
    assert one.as_conflict().header_problem is None


HEADER_NAMES = st.sampled_from(
    ["message-id", "source-system", "inbound-message-id", "correlation-id", "content-type", "x"]
)
HEADER_VALUES = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


@settings(max_examples=int(os.environ.get("MEDSTREAM_FUZZ_EXAMPLES", "300")), derandomize=True)
@given(
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=6),
    value=st.binary(max_size=64),
    trusted=st.booleans(),
)
def test_any_headers_give_a_safe_key_and_checked_values(
    headers: list[tuple[str, bytes]], value: bytes, trusted: bool
) -> None:
    """Whatever a producer sends as headers: wrapping never raises, the key fits every
    id column and holds no control character, and every header value MedStream reads
    has passed the checks (or the record carries a problem and is dead-lettered)."""
    received = wrap(headers, value, trusted=trusted)
    assert 0 < len(received.message_id) <= MAX_MESSAGE_ID_LENGTH
    assert not any(unicodedata.category(c) == "Cc" for c in received.message_id)
    received.message_id.encode("utf-8")  # no surrogates: every column takes it
    for name in ("message-id", "source-system", "inbound-message-id", "correlation-id"):
        text = received.header(name)
        if text is not None:
            assert not any(unicodedata.category(c) == "Cc" for c in text)
            text.encode("utf-8")
            assert len(text) <= 300
    if not trusted:
        assert received.header("inbound-message-id") is None
    assert received.as_conflict().message_id != received.message_id
