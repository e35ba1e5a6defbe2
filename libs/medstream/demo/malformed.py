"""Malformed inbound messages, each with the dead-letter code ingestion must give it.

The cases: truncated, wrong encoding, oversize, wrong types, XML on the JSON topic,
HL7 without MSH, DICOM without a preamble, a valid FHIR Bundle holding an invalid
resource, and more. Each case varies with the seed (where it is cut, which field is
wrong), so a large set is not the same bytes again. A unit test checks every code
against ingestion's pure core.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import numpy as np

from medstream.imaging.phantom import to_dicom
from medstream.settings import Settings
from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR, EHR_INBOUND_HL7V2

FHIR, HL7, DICOM = EHR_INBOUND_FHIR.name, EHR_INBOUND_HL7V2.name, EHR_INBOUND_DICOM.name
Case = Callable[[random.Random], tuple[str, bytes, str]]


def _observation(rng: random.Random) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/BAD{rng.randrange(1 << 30)}"},
        "effectiveDateTime": "2026-03-14T10:00:00Z",
        "valueQuantity": {"value": rng.randrange(40, 160), "unit": "/min"},
    }


def _dicom(rng: random.Random) -> bytes:
    image = np.random.default_rng(rng.randrange(1 << 30)).random((32, 32), dtype=np.float32)
    return to_dicom(image, patient_id=f"BAD{rng.randrange(1 << 30)}", seed=rng.randrange(1 << 30))


def truncated_json(rng: random.Random) -> tuple[str, bytes, str]:
    raw = json.dumps(_observation(rng)).encode()
    return FHIR, raw[: rng.randrange(1, len(raw) - 1)], "fhir.not_json"


def utf16_json(rng: random.Random) -> tuple[str, bytes, str]:
    return FHIR, json.dumps(_observation(rng)).encode("utf-16"), "fhir.not_utf8"


def xml_on_json_topic(rng: random.Random) -> tuple[str, bytes, str]:
    value = (
        f'<Patient xmlns="http://hl7.org/fhir"><id value="p{rng.randrange(1 << 30)}"/></Patient>'
    )
    return FHIR, value.encode(), "fhir.not_json"


def wrong_type(rng: random.Random) -> tuple[str, bytes, str]:
    resource = _observation(rng)
    field, bad = rng.choice(
        [("valueQuantity", {"value": "fast"}), ("status", 7), ("code", "heart rate")]
    )
    resource[field] = bad
    return FHIR, json.dumps(resource).encode(), "fhir.invalid_resource"


def bundle_with_invalid_resource(rng: random.Random) -> tuple[str, bytes, str]:
    good, bad = _observation(rng), _observation(rng)
    bad["valueQuantity"] = {"value": "high"}
    entries = [{"resource": good}, {"resource": bad}]
    rng.shuffle(entries)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return FHIR, json.dumps(bundle).encode(), "fhir.invalid_resource"


def no_resource_type(rng: random.Random) -> tuple[str, bytes, str]:
    resource = _observation(rng)
    del resource["resourceType"]
    return FHIR, json.dumps(resource).encode(), "fhir.no_resource_type"


def unknown_resource_type(rng: random.Random) -> tuple[str, bytes, str]:
    resource = {**_observation(rng), "resourceType": rng.choice(["Observaton", "Vitals", "X"])}
    return FHIR, json.dumps(resource).encode(), "fhir.unknown_resource_type"


def hl7_without_msh(rng: random.Random) -> tuple[str, bytes, str]:
    value = f"PID|1||BAD{rng.randrange(1 << 30)}^^^HOSP^MR||Doe^Jo\rOBX|1|NM|8867-4^HR^LN||88|/min"
    return HL7, value.encode(), "hl7.no_msh"


def hl7_without_patient(rng: random.Random) -> tuple[str, bytes, str]:
    value = (
        f"MSH|^~\\&|EHR|H|MS|MS|20260314100000||ORU^R01|BADCTL{rng.randrange(1 << 20)}|P|2.5.1"
        "\rOBR|1|||VS\rOBX|1|NM|8867-4^HR^LN||88|/min"
    )
    return HL7, value.encode(), "hl7.no_patient"


def hl7_binary(rng: random.Random) -> tuple[str, bytes, str]:
    return HL7, b"MSH|" + rng.randbytes(64) + b"\x00\x01", "hl7.binary"


def dicom_without_preamble(rng: random.Random) -> tuple[str, bytes, str]:
    return DICOM, _dicom(rng)[132:], "dicom.no_preamble"


def truncated_dicom(rng: random.Random) -> tuple[str, bytes, str]:
    raw = _dicom(rng)  # cut inside the pixel data, the last 2 KiB
    return DICOM, raw[: rng.randrange(len(raw) - 1800, len(raw) - 10)], "dicom.truncated"


CASES: tuple[Case, ...] = (
    truncated_json,
    utf16_json,
    xml_on_json_topic,
    wrong_type,
    bundle_with_invalid_resource,
    no_resource_type,
    unknown_resource_type,
    hl7_without_msh,
    hl7_without_patient,
    hl7_binary,
    dicom_without_preamble,
    truncated_dicom,
)


def oversize_dicom(limit: int | None = None) -> tuple[str, bytes, str]:
    """A DICOM file one MiB over the configured size limit."""
    limit = limit or Settings().dicom_max_bytes
    raw = _dicom(random.Random(0))
    return DICOM, raw + b"\x00" * (limit + (1 << 20) - len(raw)), "dicom.too_large"


def malformed_inputs(count: int, seed: int, *, oversize: int = 1) -> list[tuple[str, bytes, str]]:
    """``count`` malformed messages (topic, bytes, expected code), cycling through the
    cases; ``oversize`` of them are DICOM files over the size limit."""
    rng = random.Random(seed)
    made = [CASES[n % len(CASES)](rng) for n in range(max(0, count - oversize))]
    made += [oversize_dicom() for _ in range(min(oversize, count))]
    rng.shuffle(made)
    return made
