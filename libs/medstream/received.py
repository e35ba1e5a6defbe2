"""A consumed Kafka record, the idempotency key MedStream derives for it, and the
checks on the headers that MedStream reads.

Construction never fails, whatever the record holds: a header that cannot be trusted
is recorded as ``header_problem`` (a PHI-free sentence) and the processor dead-letters
the record with ``envelope.bad_header``. Only the headers below are ever read, and only
after they pass: valid UTF-8, no control characters, one value, and a bounded length.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

MESSAGE_ID_HEADER = "message-id"
SOURCE_SYSTEM_HEADER = "source-system"
# Set by MedStream on internal topics; a producer on an inbound topic cannot set them.
INBOUND_MESSAGE_ID_HEADER = "inbound-message-id"
CORRELATION_ID_HEADER = "correlation-id"
INTERNAL_HEADERS = frozenset({INBOUND_MESSAGE_ID_HEADER, CORRELATION_ID_HEADER})

# Ids longer than this are replaced by their hash (stable, and within every id column).
MAX_MESSAGE_ID_LENGTH = 200
# Headers whose values reach a column are refused beyond these lengths.
MAX_HEADER_LENGTH = {
    SOURCE_SYSTEM_HEADER: 128,
    INBOUND_MESSAGE_ID_HEADER: MAX_MESSAGE_ID_LENGTH + 64,
    CORRELATION_ID_HEADER: MAX_MESSAGE_ID_LENGTH + 64,
}
# The key an id-conflict dead letter is recorded under: the id plus the content's hash.
CONFLICT_MARK = "#conflict:"

# Derives a message id from a format's own content (HL7 MSH-10, DICOM SOPInstanceUID…),
# or returns None when the content has none.
ContentIdDeriver = Callable[[bytes], str | None]


@dataclass(frozen=True)
class Received:
    """One consumed record with its coordinates, its idempotency key and its checked
    headers.

    ``headers`` are the record's headers as sent (dead letters keep them). ``trusted``
    is False on inbound topics, where a producer outside MedStream writes: there the
    internal headers are ignored. ``header_problem`` says why the record's headers
    cannot be used, if they cannot.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    message_id: str
    trusted: bool = True
    header_problem: str | None = field(init=False, default=None)
    _checked: dict[str, str] = field(init=False, default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        checked, problem = check_headers(self.headers, trusted=self.trusted)
        object.__setattr__(self, "_checked", checked)
        object.__setattr__(self, "header_problem", problem)

    def header(self, name: str) -> str | None:
        """The checked value of header ``name``, if it is present and may be read here."""
        return self._checked.get(name)

    @property
    def ignored_headers(self) -> list[str]:
        """Internal header names a producer set on an untrusted topic (names only)."""
        if self.trusted:
            return []
        return sorted({k for k, _ in self.headers if k in INTERNAL_HEADERS})

    @cached_property
    def content_sha256(self) -> str:
        """The SHA-256 of the value: what tells a redelivery from a reused id."""
        return hashlib.sha256(self.value).hexdigest()

    def as_conflict(self) -> Received:
        """This record under the key its id-conflict dead letter is recorded with, so it
        has an outcome of its own beside the first message that used the id."""
        return replace(self, message_id=conflict_key(self.message_id, self.value))

    @classmethod
    def from_record(
        cls, record: Any, derive: ContentIdDeriver | None = None, *, trusted: bool = True
    ) -> Received:
        """Wrap an aiokafka ``ConsumerRecord``, working out its message id and checking
        the headers MedStream reads. Never raises."""
        headers = tuple(
            (str(k), bytes(v) if v is not None else b"") for k, v in (record.headers or ())
        )
        value = bytes(record.value or b"")
        return cls(
            topic=str(record.topic),
            partition=int(record.partition),
            offset=int(record.offset),
            timestamp=int(record.timestamp or 0),
            key=bytes(record.key) if record.key is not None else None,
            value=value,
            headers=headers,
            message_id=message_id_for(value, headers, derive),
            trusted=trusted,
        )


def _readable(name: str, values: list[bytes]) -> tuple[str | None, str | None]:
    """The one usable value of header ``name``, or why there is none (never the value)."""
    if len({v.strip() for v in values}) > 1:
        return None, f"Header {name} appears more than once with different values."
    try:
        text = values[0].decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, f"Header {name} is not valid UTF-8."
    if any(unicodedata.category(c) == "Cc" for c in text):
        return None, f"Header {name} contains control characters (NUL, line breaks…)."
    limit = MAX_HEADER_LENGTH.get(name)
    if limit is not None and len(text) > limit:
        return None, f"Header {name} is {len(text)} characters, over its limit of {limit}."
    return text or None, None


def check_headers(
    headers: tuple[tuple[str, bytes], ...], *, trusted: bool
) -> tuple[dict[str, str], str | None]:
    """The readable values of the headers MedStream uses, and the first problem found."""
    wanted = {MESSAGE_ID_HEADER, SOURCE_SYSTEM_HEADER} | (INTERNAL_HEADERS if trusted else set())
    found: dict[str, list[bytes]] = {}
    for key, value in headers:
        if key in wanted:
            found.setdefault(key, []).append(value)
    checked: dict[str, str] = {}
    problem = None
    for name in sorted(found):
        text, why = _readable(name, found[name])
        if why is not None:
            problem = problem or why
        elif text is not None:
            checked[name] = text
    return checked, problem


def conflict_key(message_id: str, value: bytes) -> str:
    """The key of a message that reused ``message_id`` for other content: the id and the
    start of its content hash, so each distinct message keeps an outcome of its own."""
    return f"{message_id}{CONFLICT_MARK}{hashlib.sha256(value).hexdigest()[:16]}"


def message_id_for(
    value: bytes, headers: tuple[tuple[str, bytes], ...], derive: ContentIdDeriver | None = None
) -> str:
    """The CONTRACT's idempotency key: the ``message-id`` header, else one derived from
    the content's own id, else ``sha256:`` of the bytes.

    A ``message-id`` header that cannot be read (not UTF-8, control characters, two
    values) gives ``sha256:`` of its raw bytes: a key that is safe in any column and
    the same on every redelivery, under which the record is dead-lettered.
    """
    raw_ids = [raw for key, raw in headers if key == MESSAGE_ID_HEADER and raw.strip()]
    if raw_ids:
        text, problem = _readable(MESSAGE_ID_HEADER, raw_ids)
        if problem is None and text:
            return _bounded(text)
        return "sha256:" + hashlib.sha256(b"\x00".join(raw_ids)).hexdigest()
    if derive is not None:
        try:
            derived = derive(value)
        except Exception:  # noqa: BLE001  (an unparsable message falls back to its hash)
            derived = None
        if derived:
            # Content ids can hold identifiers (a FHIR Patient.id is the EHR's patient
            # id), so only their hash is kept: as stable, and safe in any table or log.
            kind, _, rest = derived.partition(":")
            return (
                f"{kind[:16]}:sha256:"
                + hashlib.sha256(rest.encode("utf-8", "surrogatepass")).hexdigest()
            )
    return "sha256:" + hashlib.sha256(value).hexdigest()


def _bounded(message_id: str) -> str:
    """Ids longer than the inbox key column are replaced by their hash, still stable."""
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()
