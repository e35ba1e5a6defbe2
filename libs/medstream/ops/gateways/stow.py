"""DICOMweb STOW-RS (PS3.18 10.5): the multipart/related request body, and the DICOM
JSON store response.

Starlette parses multipart/form-data only, and the standard library's email parser
round-trips binary parts through text; a related body is split on its boundary here,
byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import Message
from typing import Any

DICOM_TYPE = "application/dicom"
# Status codes a failed instance is listed with (PS3.4 Annex B, PS3.18 Table 10.5.3-1).
CANNOT_UNDERSTAND = 0xC000  # final: the same instance would fail again
OUT_OF_RESOURCES = 0xA700  # Kafka unavailable: the sender should retry


class NotStowBody(ValueError):
    """The request is not multipart/related with application/dicom parts."""


def _parameters(content_type: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["Content-Type"] = content_type
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def dicom_parts(content_type: str, body: bytes) -> list[bytes]:
    """The application/dicom parts of a STOW-RS body, in order; NotStowBody if the
    body is not multipart/related; type="application/dicom"."""
    media, params = _parameters(content_type)
    boundary = params.get("boundary")
    if media != "multipart/related" or not boundary:
        raise NotStowBody('Content-Type must be multipart/related; type="application/dicom"')
    if params.get("type", DICOM_TYPE).lower() != DICOM_TYPE:
        raise NotStowBody('only type="application/dicom" parts are accepted (PS3.18 10.5)')
    delimiter = b"--" + boundary.encode()
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    if not first.startswith(delimiter):
        # A preamble before the first boundary is allowed: drop it.
        _, found, rest = first.partition(delimiter)
        if not found:
            raise NotStowBody("the body has no part delimited by its boundary")
        chunks[0] = delimiter + rest
    parts = []
    for delimited in chunks:
        chunk = delimited.removeprefix(delimiter)
        if chunk.startswith(b"--"):
            break  # the close delimiter
        header_block, separator, content = chunk.partition(b"\r\n\r\n")
        if not separator:
            raise NotStowBody("a part has no blank line between its headers and content")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (
                line.decode("latin-1").partition(":")
                for line in header_block.split(b"\r\n")
                if line.strip()
            )
        }
        part_type = headers.get("content-type", DICOM_TYPE).split(";")[0].strip().lower()
        if part_type != DICOM_TYPE:
            raise NotStowBody(f"a part is {part_type}; only application/dicom is accepted")
        parts.append(content)
    if not parts:
        raise NotStowBody("the body holds no application/dicom part")
    return parts


@dataclass(frozen=True)
class StoredInstance:
    """One instance's outcome: its UIDs (when they could be read) and its status."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    status: int = 0
    code: str | None = None


def _reference(instance: StoredInstance) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if instance.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [instance.sop_class_uid]}
    if instance.sop_instance_uid:
        item["00081155"] = {"vr": "UI", "Value": [instance.sop_instance_uid]}
    return item


def store_response(instances: list[StoredInstance]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and DICOM JSON body: 200 when every instance was stored, 202 when
    some failed, 409 when all failed (Failed SOP Sequence with each Failure Reason)."""
    stored = [i for i in instances if i.status == 0]
    failed = [i for i in instances if i.status != 0]
    body: dict[str, Any] = {}
    if failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    **_reference(i),
                    "00081197": {"vr": "US", "Value": [i.status]},
                    # Error Comment: our stable code, so a sender can tell why.
                    **({"00000902": {"vr": "LO", "Value": [i.code[:64]]}} if i.code else {}),
                }
                for i in failed
            ],
        }
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": [_reference(i) for i in stored]}
    status = 200 if not failed else 202 if stored else 409
    return status, body
