from types import SimpleNamespace

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
