"""Every kind of bad input, for each inbound format, ends in its dead-letter topic with
a stable code and a PHI-free reason; valid but unused input is acknowledged, not
rejected; the good message after them all still gets through."""

from __future__ import annotations

import json
import uuid
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file

from medstream.kafka import make_producer
from medstream.settings import Settings

from .test_deid_leakage import read_topics

SECRET = "Zebulonquist"  # planted in bad inputs: must never appear in a reason
PID = f"PID|1||12345^^^H^MR||{SECRET}^Ann||19500101|F"


def dicom_bytes(**changes: object) -> bytes:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in changes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def cases() -> list[tuple[str, bytes, str | None]]:
    """(topic, bytes, expected error.code, or None for valid-but-unused)."""
    fhir, hl7, dcm = "ehr.inbound.fhir", "ehr.inbound.hl7v2", "ehr.inbound.dicom"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "valueQuantity": {"value": "fast"},
    }
    good = dicom_bytes()
    return [
        (fhir, f"<Patient><name>{SECRET}</name></Patient>".encode(), "fhir.not_json"),
        (fhir, b'{"resourceType": "Patient", "name": [', "fhir.not_json"),
        (fhir, b"\xff\xfe" + SECRET.encode("utf-16-le"), "fhir.not_utf8"),
        (fhir, json.dumps({"name": SECRET}).encode(), "fhir.no_resource_type"),
        (
            fhir,
            json.dumps({"resourceType": "Zebulon", "id": SECRET}).encode(),
            "fhir.unknown_resource_type",
        ),
        (
            fhir,
            json.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": observation}],
                }
            ).encode(),
            "fhir.invalid_resource",
        ),
        (
            fhir,
            json.dumps(
                {**observation, "valueQuantity": {"value": 80}, "subject": "Patient/p1"}
            ).encode(),
            "fhir.invalid_resource",
        ),
        (
            fhir,
            json.dumps(
                {
                    k: v
                    for k, v in {**observation, "valueQuantity": {"value": 80}}.items()
                    if k != "subject"
                }
            ).encode(),
            "fhir.no_patient_reference",
        ),
        (
            fhir,
            json.dumps(
                {"resourceType": "Encounter", "status": "finished", "class": {"code": "IMP"}}
            ).encode(),
            None,
        ),
        (hl7, f"PID|1||1^^^H^MR||{SECRET}".encode(), "hl7.no_msh"),
        (
            hl7,
            f"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X1|P|2.1\r{PID}".encode(),
            "hl7.unsupported_version",
        ),
        (
            hl7,
            b"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|X2|P|2.5\rOBX|1|NM|8867-4^HR^LN||80|/min",
            "hl7.no_patient",
        ),
        (
            hl7,
            b"MSH|^~\\&|A|B|\x00\x00|D|20260101||ORU^R01|X3|P|2.5\r" + PID.encode(),
            "hl7.binary",
        ),
        (hl7, f"MSH|^~\\&|A|B|C|D|20260101||ADT^A03|X4|P|2.5\r{PID}".encode(), None),
        (dcm, b"\x00" * 200 + SECRET.encode(), "dicom.no_preamble"),
        (
            dcm,
            # A meta group, then a sequence whose item runs into garbage.
            b"\x00" * 128
            + b"DICM"
            + b"\x02\x00\x00\x00UL\x04\x00\x10\x00\x00\x00"
            + b"\x08\x00\x05\x00SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\x10\x00\x00\x00"
            + b"\xff" * 40
            + SECRET.encode(),
            "dicom.unparsable",
        ),
        (dcm, good[: len(good) // 2], "dicom.truncated"),
        (dcm, good[:132] + b"\x00" * (17 * 1024 * 1024), "dicom.too_large"),
        (dcm, dicom_bytes(SOPInstanceUID=None), "dicom.no_sop_instance"),
        (dcm, dicom_bytes(PatientID=""), "dicom.no_patient"),
        (dcm, Path(get_testdata_file("rtplan.dcm")).read_bytes(), None),
    ]


def _audit_payload(value: bytes) -> dict[str, Any]:
    """An audit record's payload ({} for a record that is not one: the topic is shared
    by every service and every test, and this test judges only its own records)."""
    try:
        payload = json.loads(value)["payload"]
    except (ValueError, KeyError, TypeError):
        return {}
    return payload if isinstance(payload, dict) else {}


async def test_every_bad_input_is_dead_lettered_with_its_code(
    settings: Settings, pipeline: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    producer = make_producer(settings)
    await producer.start()
    sent = []
    try:
        for index, (topic, value, code) in enumerate(cases()):
            message_id = f"bad-{run}-{index}"
            await producer.send_and_wait(
                topic, value=value, headers=[("message-id", message_id.encode())]
            )
            sent.append((message_id, topic, code))
        good = (
            f"MSH|^~\\&|A|B|C|D|20260101||ORU^R01|G1|P|2.5\r{PID}\r"
            "OBX|1|NM|8867-4^HR^LN||80|/min|||||F|||20260101"
        )
        await producer.send_and_wait(
            "ehr.inbound.hl7v2",
            value=good.encode(),
            headers=[("message-id", f"good-{run}".encode())],
        )
    finally:
        await producer.stop()

    expected = {m: (t, c) for m, t, c in sent if c is not None}
    dead_topics = sorted({f"{t}.dlt" for _, t, _ in sent})

    def ours(records: list) -> dict[str, object]:  # type: ignore[type-arg]
        # The dead-letter topics also hold the hostile corpus's unreadable headers.
        return {
            dict(r.headers)["message-id"].decode("utf-8", "replace"): r
            for r in records
            if dict(r.headers).get("message-id", b"").decode("utf-8", "replace") in expected
        }

    dead = ours(
        await read_topics(settings, dead_topics, until=lambda rs: len(ours(rs)) == len(expected))
    )
    assert set(dead) == set(expected), f"missing dead letters: {set(expected) - set(dead)}"
    for message_id, record in dead.items():
        topic, code = expected[message_id]
        headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}  # type: ignore[attr-defined]
        assert record.topic == f"{topic}.dlt"  # type: ignore[attr-defined]
        assert headers["error.code"] == code, (message_id, headers["error.code"])
        assert headers["error.stage"] == "ingestion"
        assert headers["original.topic"] == topic
        assert SECRET not in headers["error.message"]
        assert len(headers["error.message"]) > 10

    # Valid but unused: acknowledged and counted in the audit trail, never dead-lettered.
    unused_ids = {m for m, _, c in sent if c is None}
    audit = await read_topics(
        settings,
        ["medstream.audit"],
        # The good message too: its audit record may come on another partition.
        until=lambda rs: (
            unused_ids | {f"good-{run}"} <= {_audit_payload(r.value).get("message_id") for r in rs}
        ),
    )
    payloads = [p for p in (_audit_payload(r.value) for r in audit) if p]
    received = {
        p["message_id"]: p
        for p in payloads
        if p["action"] == "message.received" and p.get("message_id") in unused_ids | {f"good-{run}"}
    }
    assert unused_ids <= set(received)
    for message_id in unused_ids:
        assert received[message_id]["details"]["records"] == 0
        assert received[message_id]["details"]["unused"]
    # And the good message after them all went through.
    assert received[f"good-{run}"]["details"]["records"] == 1
