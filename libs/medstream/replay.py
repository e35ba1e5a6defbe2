"""``medstream replay``: publish files to the inbound topics, as an EHR would."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medstream.clinical import SourceFormat
from medstream.deid.files import split_hl7_file
from medstream.formats import hl7v2
from medstream.ingest import FORMAT_OF_TOPIC

TOPIC_OF_FORMAT = {fmt: topic for topic, fmt in FORMAT_OF_TOPIC.items()}


@dataclass(frozen=True)
class Outgoing:
    """One message to publish."""

    topic: str
    value: bytes
    origin: str


def detect_format(path: Path, head: bytes) -> SourceFormat | None:
    """The inbound format of a file, from its content first and its suffix second."""
    if len(head) >= 132 and head[128:132] == b"DICM":
        return SourceFormat.DICOM
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"MSH"):
        return SourceFormat.HL7V2
    if stripped.startswith(b"{") or path.suffix.lower() in {".json", ".ndjson"}:
        return SourceFormat.FHIR
    if path.suffix.lower() in {".hl7", ".er7"}:
        return SourceFormat.HL7V2
    if path.suffix.lower() in {".dcm", ".dicom"}:
        return SourceFormat.DICOM
    return None


def messages(paths: list[Path]) -> Iterator[Outgoing]:
    """Every message in ``paths`` (folders are walked): NDJSON and multi-message ER7
    files yield one message per line or per MSH."""
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            raw = file.read_bytes()
            source_format = detect_format(file, raw[:256])
            if source_format is None:
                continue
            topic = TOPIC_OF_FORMAT[source_format]
            if source_format is SourceFormat.HL7V2:
                for message in split_hl7_file(hl7v2.decode(raw)):
                    yield Outgoing(topic, message.encode(), file.name)
            elif source_format is SourceFormat.FHIR and file.suffix.lower() == ".ndjson":
                # Lines are sent as they are, broken ones too: ingestion judges them.
                for line in raw.splitlines():
                    if line.strip():
                        yield Outgoing(topic, line, file.name)
            else:
                yield Outgoing(topic, raw, file.name)
