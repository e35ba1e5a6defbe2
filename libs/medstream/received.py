"""A consumed Kafka record, and the idempotency key MedStream derives for it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MESSAGE_ID_HEADER = "message-id"
SOURCE_SYSTEM_HEADER = "source-system"
MAX_MESSAGE_ID_LENGTH = 200

# Derives a message id from a format's own content (HL7 MSH-10, DICOM SOPInstanceUID…),
# or returns None when the content has none.
ContentIdDeriver = Callable[[bytes], str | None]


@dataclass(frozen=True)
class Received:
    """One consumed record with its coordinates and its idempotency key."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    message_id: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name``, decoded as UTF-8, if present."""
        for key, value in self.headers:
            if key == name:
                return value.decode("utf-8", errors="replace")
        return None

    @classmethod
    def from_record(cls, record: Any, derive: ContentIdDeriver | None = None) -> Received:
        """Wrap an aiokafka ``ConsumerRecord``, working out its message id."""
        headers = tuple((str(k), bytes(v or b"")) for k, v in (record.headers or ()))
        value = bytes(record.value or b"")
        return cls(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp,
            key=record.key,
            value=value,
            headers=headers,
            message_id=message_id_for(value, headers, derive),
        )


def message_id_for(
    value: bytes, headers: tuple[tuple[str, bytes], ...], derive: ContentIdDeriver | None = None
) -> str:
    """The CONTRACT's idempotency key: the ``message-id`` header, else one derived from
    the content's own id, else ``sha256:`` of the bytes."""
    for key, raw in headers:
        if key == MESSAGE_ID_HEADER and raw.strip():
            return _bounded(raw.decode("utf-8", errors="replace").strip())
    if derive is not None:
        try:
            derived = derive(value)
        except Exception:  # noqa: BLE001  (an unparsable message falls back to its hash)
            derived = None
        if derived:
            # Content ids can hold identifiers (a FHIR Patient.id is the EHR's patient
            # id), so only their hash is kept: as stable, and safe in any table or log.
            kind, _, rest = derived.partition(":")
            return f"{kind}:sha256:" + hashlib.sha256(rest.encode()).hexdigest()
    return "sha256:" + hashlib.sha256(value).hexdigest()


def _bounded(message_id: str) -> str:
    """Ids longer than the inbox key column are replaced by their hash, still stable."""
    if len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode()).hexdigest()
