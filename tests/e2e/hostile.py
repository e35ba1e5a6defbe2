"""A hostile corpus: inputs nobody in the pipeline's design had in mind, each with the
exact outcome it must have (the code and the stage of its dead letter, or the result
it must still reach). Written for these tests, not taken from any example.

Every kind is a function of a random generator, so ``make faults`` sends several
variants of each (MEDSTREAM_FAULT_SCALE) where CI sends one. Kinds that are large by
nature (tens of megabytes) are sent once whatever the scale. PLANTED strings are put
into names, headers and bodies; none may ever appear in a service log.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from medstream.demo.feed import FeedMessage
from medstream.formats import fhir as fhir_format
from medstream.formats import hl7v2 as hl7_format
from medstream.imaging.phantom import phantom, to_dicom
from medstream.received import conflict_key, message_id_for

FHIR, HL7, DICOM = "ehr.inbound.fhir", "ehr.inbound.hl7v2", "ehr.inbound.dicom"
# Unlikely anywhere else: a log line holding one of these leaked a message's content.
PLANTED = ("Quillonvaxe", "Brindlemarsh", "Ozymandrel", "Thessaly-Vorn")
MB = 1024 * 1024
WHEN = datetime(2026, 3, 14, 9, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Kind:
    """One kind of hostile input: how to make it, and whether it is large."""

    name: str
    make: Callable[[random.Random, str], list[FeedMessage]]
    large: bool = False


def name(rng: random.Random) -> str:
    return f"{rng.choice(PLANTED)}^{rng.choice(PLANTED)}"


def mrn(rng: random.Random, run: str) -> str:
    return f"H{run[-6:].upper()}{rng.randrange(10**6):06d}"


def sent(topic: str, value: bytes, message_id: str, **expect: object) -> FeedMessage:
    """A message sent with a plain, valid message-id header."""
    headers = (("message-id", message_id.encode()), ("source-system", b"hostile-test"))
    return FeedMessage(topic, value, None, message_id, headers=headers, **expect)  # type: ignore[arg-type]


def dead(
    topic: str, value: bytes, message_id: str, code: str, stage: str = "ingestion"
) -> FeedMessage:
    return sent(topic, value, message_id, expect_code=code, expect_stage=stage)


def observation(
    patient: str,
    value: object,
    *,
    loinc: str = "8867-4",
    unit: str = "/min",
    when: str | None = None,
) -> dict[str, object]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when or WHEN.isoformat(),
        "valueQuantity": {"value": value, "unit": unit},
    }


def fhir_json(resource: object) -> bytes:
    return json.dumps(resource).encode()


def msh(kind: str, control: str, *, version: str = "2.5.1", sep: str = "|") -> str:
    fields = [
        "MSH",
        "^~\\&",
        "HOSTILE",
        "H",
        "MS",
        "MS",
        "20260314093000",
        "",
        kind,
        control,
        "P",
        version,
    ]
    return sep.join(fields)


def oru(
    patient: str,
    control: str,
    value: str = "88",
    *,
    stamp: str = "20260314093000",
    value_type: str = "NM",
    pid_name: str = "Doe^Ann",
) -> bytes:
    return "\r".join(
        [
            msh("ORU^R01^ORU_R01", control),
            f"PID|1||{patient}^^^H^MR||{pid_name}||19600101|F",
            "OBR|1|||VS^Vital signs",
            f"OBX|1|{value_type}|8867-4^Heart rate^LN||{value}|/min|||||F|||{stamp}",
            f"OBX|2|NM|9279-1^Respiratory rate^LN||18|/min|||||F|||{stamp}",
        ]
    ).encode()


def film(rng: random.Random, patient: str, **changes: object) -> Dataset:
    ds = pydicom.dcmread(
        BytesIO(
            to_dicom(
                phantom(np.random.default_rng(rng.randrange(1 << 30))).image,
                patient_id=patient,
                seed=rng.randrange(1 << 30),
            )
        )
    )
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset) -> bytes:
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def uid(rng: random.Random) -> str:
    return f"hostile-{rng.randrange(1 << 62):x}"


# ----------------------------------------------------------------------------- FHIR


def fhir_dead(
    build: Callable[[random.Random, str], bytes], code: str
) -> Callable[[random.Random, str], list[FeedMessage]]:
    return lambda rng, run: [dead(FHIR, build(rng, run), f"{run}-{uid(rng)}", code)]


def nested_arrays(rng: random.Random, run: str) -> bytes:
    depth = rng.randrange(20_000, 60_000)
    return b"[" * depth + b"]" * depth


def nested_objects(rng: random.Random, run: str) -> bytes:
    depth = rng.randrange(70, 900)
    body = '{"a":' * depth + "1" + "}" * depth
    return (
        f'{{"resourceType": "Patient", "id": "p{rng.randrange(99)}", "extension": {body}}}'.encode()
    )


def long_number(rng: random.Random, run: str) -> bytes:
    digits = "9" * rng.randrange(4_000, 20_000)
    return f'{{"resourceType": "Observation", "valueQuantity": {{"value": {digits}}}}}'.encode()


def overflowing_number(rng: random.Random, run: str) -> bytes:
    return fhir_json_text(observation(mrn(rng, run), 0)).replace(b": 0,", b": 1e999,", 1)


def fhir_json_text(resource: object) -> bytes:
    return json.dumps(resource).encode()


def nan_literal(rng: random.Random, run: str) -> bytes:
    literal = rng.choice([b"NaN", b"Infinity", b"-Infinity"])
    return fhir_json_text(observation(mrn(rng, run), 0)).replace(b": 0,", b": " + literal + b",", 1)


def nul_in_string(rng: random.Random, run: str) -> bytes:
    return (
        b'{"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe\\u0000'
        + PLANTED[0].encode()
        + b'"}]}'
    )


def lone_surrogate(rng: random.Random, run: str) -> bytes:
    return (
        b'{"resourceType": "Patient", "id": "p1", "name": [{"family": "\\udc80'
        + PLANTED[1].encode()
        + b'"}]}'
    )


def latin1(rng: random.Random, run: str) -> bytes:
    text = json.dumps(
        {"resourceType": "Patient", "id": "p1", "name": [{"family": "Müller"}]}, ensure_ascii=False
    )
    return text.encode("latin-1")


def bundle_of(count: int) -> bytes:
    entry = {"resource": {"resourceType": "Basic", "code": {"text": "x"}}}
    return json.dumps(
        {"resourceType": "Bundle", "type": "collection", "entry": [entry] * count}
    ).encode()


def twenty_mb_note(rng: random.Random, run: str) -> bytes:
    text = (f"{PLANTED[2]} reviewed. " * (20 * MB // 20)).encode()
    return json.dumps(document(mrn(rng, run), text)).encode()


def document(patient: str, text: bytes) -> dict[str, object]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": f"Patient/{patient}"},
        "date": WHEN.isoformat(),
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(text).decode()}}
        ],
    }


def two_mb_note(rng: random.Random, run: str) -> bytes:
    return json.dumps(document(mrn(rng, run), b"Chest clear. " * (2 * MB // 13 + 1))).encode()


def not_utf8_note(rng: random.Random, run: str) -> bytes:
    return json.dumps(document(mrn(rng, run), "Gefäß".encode("latin-1") * 20)).encode()


def grows_past_the_limit(rng: random.Random, run: str) -> bytes:
    """31 MB that the identified record would carry as about 60: every quote in the
    text is escaped again when the resource is wrapped in the event."""
    patient = {
        "resourceType": "Patient",
        "id": mrn(rng, run),
        "extension": [{"url": "http://example.org/x", "valueString": '"' * (15 * MB)}],
    }
    return json.dumps(patient).encode()


def fhir_kinds() -> list[Kind]:
    def valid(
        build: Callable[[random.Random, str], tuple[bytes, str]],
        family: str | None = None,
        *,
        unused: bool = False,
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            value, message_id = build(rng, run)
            return [sent(FHIR, value, message_id, family=family, unused=unused)]

        return make

    def xml_content_type(rng: random.Random, run: str) -> list[FeedMessage]:
        message_id = f"{run}-{uid(rng)}"
        value = fhir_json(observation(mrn(rng, run), rng.randrange(50, 120)))
        headers = (("message-id", message_id.encode()), ("content-type", b"application/xml"))
        return [FeedMessage(FHIR, value, None, message_id, family="monitoring", headers=headers)]

    def json_content_type_on_xml(rng: random.Random, run: str) -> list[FeedMessage]:
        message_id = f"{run}-{uid(rng)}"
        headers = (("message-id", message_id.encode()), ("content-type", b"application/json"))
        value = f"<Patient><name value='{PLANTED[3]}'/></Patient>".encode()
        return [
            FeedMessage(
                FHIR,
                value,
                None,
                message_id,
                expect_code="fhir.not_json",
                expect_stage="ingestion",
                headers=headers,
            )
        ]

    def bom(rng: random.Random, run: str) -> tuple[bytes, str]:
        return b"\xef\xbb\xbf" + fhir_json(observation(mrn(rng, run), 77)), f"{run}-{uid(rng)}"

    def unicode_patient(rng: random.Random, run: str) -> tuple[bytes, str]:
        patient = {
            "resourceType": "Patient",
            "id": mrn(rng, run),
            "gender": "female",
            "name": [{"family": "王", "given": ["Zoë", "אביגיל", "🦋"]}],
            "birthDate": "1950-02-28",
        }
        return json.dumps(patient, ensure_ascii=rng.random() < 0.5).encode(), f"{run}-{uid(rng)}"

    def encounter(rng: random.Random, run: str) -> tuple[bytes, str]:
        resource = {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"code": "IMP"},
            "subject": {"reference": f"Patient/{mrn(rng, run)}"},
        }
        return json.dumps(resource).encode(), f"{run}-{uid(rng)}"

    def many_unused(rng: random.Random, run: str) -> tuple[bytes, str]:
        return bundle_of(rng.randrange(1500, 2500)), f"{run}-{uid(rng)}"

    def transaction(rng: random.Random, run: str) -> tuple[bytes, str]:
        patient = mrn(rng, run)
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                    "resource": {
                        "resourceType": "Patient",
                        "id": patient,
                        "name": [{"family": PLANTED[0]}],
                    },
                    "request": {"method": "PUT", "url": f"Patient/{patient}"},
                },
                {
                    "resource": {
                        **observation(patient, 96, loinc="59408-5", unit="%"),
                        "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"},
                    },
                    "request": {"method": "POST", "url": "Observation"},
                },
            ],
        }
        return json.dumps(bundle).encode(), f"{run}-{uid(rng)}"

    def vital(
        value: object, code: str, **kw: object
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        return lambda rng, run: [
            dead(
                FHIR,
                fhir_json(observation(mrn(rng, run), value, **kw)),  # type: ignore[arg-type]
                f"{run}-{uid(rng)}",
                code,
            )
        ]

    def long_patient_id(rng: random.Random, run: str) -> bytes:
        return fhir_json(observation("9" * rng.randrange(200, 2000), 80))

    def unknown_key(rng: random.Random, run: str) -> bytes:
        return fhir_json({**observation(mrn(rng, run), 80), f"{PLANTED[1]} Jr": True})

    def bad_in_bundle(rng: random.Random, run: str) -> bytes:
        entries = [
            {"resource": observation(mrn(rng, run), 80)},
            {"resource": {**observation(mrn(rng, run), 80), "status": 12}},
        ]
        return fhir_json({"resourceType": "Bundle", "type": "batch", "entry": entries})

    return [
        Kind(
            "fhir: arrays nested tens of thousands deep", fhir_dead(nested_arrays, "fhir.too_deep")
        ),
        Kind(
            "fhir: objects nested past the depth limit", fhir_dead(nested_objects, "fhir.too_deep")
        ),
        Kind("fhir: a number thousands of digits long", fhir_dead(long_number, "fhir.bad_number")),
        Kind("fhir: a number that overflows", fhir_dead(overflowing_number, "fhir.bad_number")),
        Kind("fhir: NaN and Infinity literals", fhir_dead(nan_literal, "fhir.bad_number")),
        Kind("fhir: a NUL character in a string", fhir_dead(nul_in_string, "fhir.bad_text")),
        Kind("fhir: an unpaired surrogate", fhir_dead(lone_surrogate, "fhir.bad_text")),
        Kind("fhir: Latin-1 bytes", fhir_dead(latin1, "fhir.not_utf8")),
        Kind("fhir: JSON with content-type application/xml", xml_content_type),
        Kind("fhir: XML with content-type application/json", json_content_type_on_xml),
        Kind("fhir: a byte-order mark", valid(bom, "monitoring")),
        Kind("fhir: names in four scripts and an emoji", valid(unicode_patient)),
        Kind("fhir: an Encounter no model reads", valid(encounter, unused=True)),
        Kind("fhir: a Bundle of 2,000 unused resources", valid(many_unused, unused=True)),
        Kind(
            "fhir: a transaction Bundle with urn:uuid references", valid(transaction, "monitoring")
        ),
        Kind(
            "fhir: a Bundle of 50,000 entries",
            fhir_dead(lambda rng, run: bundle_of(50_000), "fhir.too_many_entries"),
            large=True,
        ),
        Kind("fhir: a heart rate of -5", vital(-5, "clinical.implausible_value")),
        Kind("fhir: a heart rate of 1e308", vital(1e308, "clinical.implausible_value")),
        Kind(
            "fhir: SpO2 of 250%",
            vital(250, "clinical.implausible_value", loinc="59408-5", unit="%"),
        ),
        Kind(
            "fhir: a temperature of 212 Cel",
            vital(212, "clinical.implausible_value", loinc="8310-5", unit="Cel"),
        ),
        Kind(
            "fhir: an observation in year 1",
            vital(80, "fhir.date_out_of_range", when="0001-01-01T00:00:00Z"),
        ),
        Kind(
            "fhir: an observation in year 9999",
            vital(80, "fhir.date_out_of_range", when="9999-12-31T23:59:59Z"),
        ),
        Kind("fhir: a 2 MB note", fhir_dead(two_mb_note, "fhir.text_too_long")),
        Kind("fhir: a 20 MB note", fhir_dead(twenty_mb_note, "fhir.too_large_value"), large=True),
        Kind("fhir: a note that is not UTF-8", fhir_dead(not_utf8_note, "fhir.bad_attachment")),
        Kind(
            "fhir: a patient id thousands of characters long",
            fhir_dead(long_patient_id, "fhir.bad_patient_id"),
        ),
        Kind(
            "fhir: an unknown element named like a person",
            fhir_dead(unknown_key, "fhir.invalid_resource"),
        ),
        Kind(
            "fhir: one invalid resource in a batch",
            fhir_dead(bad_in_bundle, "fhir.invalid_resource"),
        ),
        Kind(
            "fhir: a record that grows past the topic limit when wrapped",
            fhir_dead(grows_past_the_limit, "ingestion.too_large_encoded"),
            large=True,
        ),
        Kind("fhir: an empty body", fhir_dead(lambda rng, run: b"", "fhir.not_json")),
        Kind(
            "fhir: a JSON array at the top",
            fhir_dead(lambda rng, run: b'[{"resourceType": "Patient"}]', "fhir.no_resource_type"),
        ),
    ]


# ----------------------------------------------------------------------------- HL7 v2


def hl7_kinds() -> list[Kind]:
    def hl7_dead(
        build: Callable[[random.Random, str, str], bytes], code: str
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            control = f"{run}-{uid(rng)}"
            return [dead(HL7, build(rng, run, control), control, code)]

        return make

    def hl7_valid(
        build: Callable[[random.Random, str, str], bytes], family: str | None = "monitoring"
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            control = f"{run}-{uid(rng)}"
            return [sent(HL7, build(rng, run, control), control, family=family)]

        return make

    def million_fields(rng: random.Random, run: str, control: str) -> bytes:
        return oru(mrn(rng, run), control) + b"\rNTE|1||" + b"^" * 1_000_000

    def many_segments(rng: random.Random, run: str, control: str) -> bytes:
        return oru(mrn(rng, run), control) + b"".join(b"\rNTE|%d||x" % i for i in range(10_001))

    def latin1_newlines(rng: random.Random, run: str, control: str) -> bytes:
        return (
            oru(mrn(rng, run), control, pid_name="Åström^José")
            .decode()
            .replace("\r", "\n")
            .encode("latin-1")
        )

    def mllp_framed(rng: random.Random, run: str, control: str) -> bytes:
        return b"\x0b" + oru(mrn(rng, run), control) + b"\x1c\x0d"

    def escaped_name(rng: random.Random, run: str, control: str) -> bytes:
        return oru(mrn(rng, run), control, pid_name=f"O\\F\\{PLANTED[0]}^Ann\\S\\Marie")

    def long_pid(rng: random.Random, run: str, control: str) -> bytes:
        return oru("7" * rng.randrange(300, 3000), control)

    def no_pid(rng: random.Random, run: str, control: str) -> bytes:
        return "\r".join([msh("ORU^R01", control), "OBX|1|NM|8867-4^HR^LN||80|/min"]).encode()

    def old_birth(rng: random.Random, run: str, control: str) -> bytes:
        return "\r".join(
            [
                msh("ADT^A01^ADT_A01", control),
                "EVN|A01|20260314",
                f"PID|1||{mrn(rng, run)}^^^H^MR||{name(rng)}||00010101|M",
            ]
        ).encode()

    def long_note(rng: random.Random, run: str, control: str) -> bytes:
        return "\r".join(
            [
                msh("MDM^T02^MDM_T02", control),
                f"PID|1||{mrn(rng, run)}^^^H^MR||Doe^Ann",
                "TXA|1|NN|TX",
                "OBX|1|TX|NOTE^Note||" + "Settled. " * (1_200_000 // 9),
            ]
        ).encode()

    def value(
        v: str, code: str = "clinical.implausible_value", value_type: str = "NM"
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        return hl7_dead(
            lambda rng, run, control: oru(mrn(rng, run), control, v, value_type=value_type), code
        )

    return [
        Kind("hl7: a million fields", hl7_dead(million_fields, "hl7.too_many_fields"), large=True),
        Kind(
            "hl7: ten thousand and one segments", hl7_dead(many_segments, "hl7.too_many_segments")
        ),
        Kind("hl7: a heart rate of 1e999", value("1e999")),
        Kind("hl7: a heart rate of -5", value("-5")),
        Kind("hl7: a heart rate of NaN", value("NaN")),
        Kind("hl7: a numeric OBX that is a word", value("tachy")),
        Kind(
            "hl7: an observation in 9999",
            hl7_dead(
                lambda rng, run, c: oru(mrn(rng, run), c, stamp="99991231235959"),
                "hl7.date_out_of_range",
            ),
        ),
        Kind("hl7: a birth date in year 1", hl7_dead(old_birth, "hl7.date_out_of_range")),
        Kind(
            "hl7: version 3.0 in MSH-12",
            hl7_dead(
                lambda rng, run, c: oru(mrn(rng, run), c).replace(b"|2.5.1", b"|3.0", 1),
                "hl7.unsupported_version",
            ),
        ),
        Kind("hl7: vitals with no PID", hl7_dead(no_pid, "hl7.no_patient")),
        Kind(
            "hl7: a patient id thousands of characters long",
            hl7_dead(long_pid, "hl7.bad_patient_id"),
        ),
        Kind("hl7: a note of 1.2 million characters", hl7_dead(long_note, "hl7.text_too_long")),
        Kind(
            "hl7: a NUL byte",
            hl7_dead(lambda rng, run, c: oru(mrn(rng, run), c) + b"\x00", "hl7.binary"),
        ),
        Kind("hl7: no MSH at all", hl7_dead(lambda rng, run, c: b"PID|1||x^^^H^MR", "hl7.no_msh")),
        Kind("hl7: Latin-1 names and \\n separators", hl7_valid(latin1_newlines)),
        Kind("hl7: MLLP framing bytes left in", hl7_valid(mllp_framed)),
        Kind("hl7: escape sequences in the name", hl7_valid(escaped_name)),
    ]


# ----------------------------------------------------------------------------- DICOM


def dicom_kinds() -> list[Kind]:
    def dicom_dead(
        build: Callable[[random.Random, str], Dataset | bytes], code: str, *, large: bool = False
    ) -> Kind:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            built = build(rng, run)
            value = built if isinstance(built, bytes) else dicom_bytes(built)
            return [dead(DICOM, value, f"{run}-{uid(rng)}", code)]

        return Kind("", make, large)

    def dicom_valid(build: Callable[[random.Random, str], Dataset]) -> Kind:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            return [
                sent(DICOM, dicom_bytes(build(rng, run)), f"{run}-{uid(rng)}", family="imaging")
            ]

        return Kind("", make)

    def header_phi(rng: random.Random, run: str) -> Dataset:
        ds = film(rng, mrn(rng, run), PatientName=name(rng))
        ds.ConsultingPhysicianName = name(rng)
        ds.ResponsiblePerson = name(rng)
        ds.MedicalAlerts = f"allergic, see {PLANTED[1]}"
        ds.Allergies = f"penicillin ({PLANTED[2]})"
        ds.PerformedStationName = f"{PLANTED[3]}-CR1"
        ds.PlacerOrderNumberImagingServiceRequest = f"{PLANTED[0]}-77"
        ds.FillerOrderNumberImagingServiceRequest = f"{PLANTED[1]}-78"
        ds.add_new(0x60000010, "US", 8)
        ds.add_new(0x60000011, "US", 8)
        ds.add_new(0x60000100, "US", 1)
        ds.add_new(0x60000102, "US", 0)
        ds.add_new(0x60000022, "LO", f"drawn by {PLANTED[2]}")
        ds.add_new(0x60001500, "LO", PLANTED[3])
        ds.add_new(0x60003000, "OW", PLANTED[0].encode() * 4)
        ds.add_new(0x00190010, "LO", "VENDOR X")
        ds.add_new(0x00191001, "LO", f"operator {PLANTED[1]}")
        return ds

    def nested(rng: random.Random, run: str) -> Dataset:
        ds = film(rng, mrn(rng, run))
        inner = Dataset()
        inner.CodeValue = "x"
        for _ in range(rng.randrange(18, 40)):
            outer = Dataset()
            outer.ContentSequence = Sequence([inner])
            inner = outer
        ds.ContentSequence = Sequence([inner])
        return ds

    def many_elements(rng: random.Random, run: str) -> Dataset:
        ds = film(rng, mrn(rng, run))
        for group in range(0x0011, 0x0011 + 2 * 400, 2):  # 400 private blocks of 256
            ds.add_new((group << 16) | 0x0010, "LO", "BULK")
            for element in range(0x1000, 0x1100):
                ds.add_new((group << 16) | element, "SS", 1)
        return ds

    def oversize(rng: random.Random, run: str) -> bytes:
        raw = dicom_bytes(film(rng, mrn(rng, run)))
        return raw + b"\x00" * (16 * MB + 1024 - len(raw))

    kinds = [
        (
            "dicom: BurnedInAnnotation YES",
            dicom_dead(
                lambda rng, run: film(rng, mrn(rng, run), BurnedInAnnotation="YES"),
                "dicom.burned_in_annotation",
            ),
        ),
        (
            "dicom: an ultrasound image",
            dicom_dead(
                lambda rng, run: film(
                    rng, mrn(rng, run), Modality="US", SOPClassUID="1.2.840.10008.5.1.4.1.1.6.1"
                ),
                "dicom.burned_in_annotation",
            ),
        ),
        (
            "dicom: a secondary capture",
            dicom_dead(
                lambda rng, run: film(
                    rng, mrn(rng, run), SOPClassUID="1.2.840.10008.5.1.4.1.1.7", Modality="OT"
                ),
                "dicom.burned_in_annotation",
            ),
        ),
        (
            "dicom: a screen save",
            dicom_dead(
                lambda rng, run: film(
                    rng, mrn(rng, run), ImageType=["DERIVED", "SECONDARY", "SCREEN SAVE"]
                ),
                "dicom.burned_in_annotation",
            ),
        ),
        (
            "dicom: an overlay in the pixels' high bits",
            dicom_dead(
                lambda rng, run: _with(film(rng, mrn(rng, run)), 0x60000102, "US", 12),
                "dicom.burned_in_annotation",
            ),
        ),
        (
            "dicom: a study date in year 1",
            dicom_dead(
                lambda rng, run: film(rng, mrn(rng, run), StudyDate="00010101"),
                "dicom.date_out_of_range",
            ),
        ),
        ("dicom: sequences nested past the limit", dicom_dead(nested, "dicom.too_deep")),
        (
            "dicom: over a hundred thousand elements",
            dicom_dead(many_elements, "dicom.too_many_elements"),
        ),
        (
            "dicom: one byte over the size limit",
            dicom_dead(oversize, "dicom.too_large", large=True),
        ),
        (
            "dicom: a PNG",
            dicom_dead(lambda rng, run: b"\x89PNG\r\n\x1a\n" + bytes(300), "dicom.no_preamble"),
        ),
        (
            "dicom: a patient id hundreds of characters long",
            dicom_dead(lambda rng, run: film(rng, "8" * 300), "dicom.bad_patient_id"),
        ),
        (
            "dicom: an image with no PatientID",
            dicom_dead(lambda rng, run: film(rng, ""), "dicom.no_patient"),
        ),
        ("dicom: names, alerts and an overlay with a name in its header", dicom_valid(header_phi)),
    ]
    return [replace(kind, name=label) for label, kind in kinds]


def _with(ds: Dataset, tag: int, vr: str, value: object) -> Dataset:
    ds.add_new(tag, vr, value)
    return ds


# ----------------------------------------------------------------------------- keys, headers


def header_kinds() -> list[Kind]:
    def good(rng: random.Random, run: str) -> bytes:
        return oru(mrn(rng, run), f"{run}-{uid(rng)}", str(rng.randrange(50, 130)))

    def raw_headers(
        headers: tuple[tuple[str, bytes], ...],
        code: str | None,
        *,
        value: bytes | None = None,
        family: str | None = None,
        key: bytes | None = None,
    ) -> Callable[[random.Random, str], list[FeedMessage]]:
        def make(rng: random.Random, run: str) -> list[FeedMessage]:
            body = value if value is not None else good(rng, run)
            hs = tuple(
                (
                    k,
                    v.replace(b"{run}", run.encode()).replace(
                        b"{n}", str(rng.randrange(10**9)).encode()
                    ),
                )
                for k, v in headers
            )
            key_id = message_id_for(body, hs, hl7_format.derive_message_id)
            return [
                FeedMessage(
                    HL7,
                    body,
                    key,
                    key_id,
                    family=family,
                    expect_code=code,
                    expect_stage="ingestion" if code else None,
                    headers=hs,
                )
            ]

        return make

    def reused_id(rng: random.Random, run: str) -> list[FeedMessage]:
        # One sender reusing its counter: the same Kafka key keeps the two in order, so
        # the first keeps the id and the second is the conflict.
        message_id = f"{run}-{uid(rng)}"
        first, second = good(rng, run), good(rng, run)
        headers = (("message-id", message_id.encode()),)
        return [
            FeedMessage(HL7, first, message_id, message_id, family="monitoring", headers=headers),
            FeedMessage(
                HL7,
                second,
                message_id,
                conflict_key(message_id, second),
                expect_code="ingestion.id_conflict",
                expect_stage="ingestion",
                headers=headers,
            ),
        ]

    def same_twice(rng: random.Random, run: str) -> list[FeedMessage]:
        message_id, body = f"{run}-{uid(rng)}", good(rng, run)
        return [sent(HL7, body, message_id, family="monitoring")] * 2

    def spoofed_inbound_id(rng: random.Random, run: str) -> list[FeedMessage]:
        message_id = f"{run}-{uid(rng)}"
        headers = (
            ("message-id", message_id.encode()),
            ("inbound-message-id", b"someone-elses-id"),
            ("correlation-id", b"c" * 10_000),
        )
        return [
            FeedMessage(
                HL7,
                b"not hl7 " + PLANTED[3].encode(),
                None,
                message_id,
                expect_code="hl7.no_msh",
                expect_stage="ingestion",
                headers=headers,
            )
        ]

    def derived_id(rng: random.Random, run: str) -> list[FeedMessage]:
        body = good(rng, run)
        return [
            FeedMessage(
                HL7,
                body,
                None,
                message_id_for(body, (), hl7_format.derive_message_id),
                family="monitoring",
                headers=(),
            )
        ]

    def fhir_derived_id(rng: random.Random, run: str) -> list[FeedMessage]:
        body = fhir_json(
            {**observation(mrn(rng, run), 72), "id": uid(rng), "meta": {"versionId": "3"}}
        )
        return [
            FeedMessage(
                FHIR,
                body,
                None,
                message_id_for(body, (), fhir_format.derive_message_id),
                family="monitoring",
                headers=(),
            )
        ]

    return [
        Kind(
            "headers: message-id not UTF-8",
            raw_headers((("message-id", b"\xff\xfe{n}"),), "envelope.bad_header"),
        ),
        Kind(
            "headers: message-id with a NUL",
            raw_headers((("message-id", b"id-{n}\x00x"),), "envelope.bad_header"),
        ),
        Kind(
            "headers: message-id with a line break",
            raw_headers((("message-id", b"id-{n}\r\nX-Forged: 1"),), "envelope.bad_header"),
        ),
        Kind(
            "headers: two different message-ids",
            raw_headers(
                (("message-id", b"a-{n}"), ("message-id", b"b-{n}")), "envelope.bad_header"
            ),
        ),
        Kind(
            "headers: source-system not UTF-8",
            raw_headers(
                (("message-id", b"{run}-ss-{n}"), ("source-system", b"\xc3\x28")),
                "envelope.bad_header",
            ),
        ),
        Kind(
            "headers: source-system a kilobyte long",
            raw_headers(
                (("message-id", b"{run}-sl-{n}"), ("source-system", b"s" * 1024)),
                "envelope.bad_header",
            ),
        ),
        Kind(
            "headers: a message-id five thousand characters long",
            raw_headers(
                (("message-id", b"{run}-" + b"L" * 5000 + b"{n}"),), None, family="monitoring"
            ),
        ),
        Kind(
            "headers: a content-type of garbage",
            raw_headers(
                (("message-id", b"{run}-ct-{n}"), ("content-type", b"\x00\xff;;")),
                None,
                family="monitoring",
            ),
        ),
        Kind(
            "headers: a header named in emoji",
            raw_headers(
                (("message-id", b"{run}-em-{n}"), ("🦋 x", PLANTED[0].encode())),
                None,
                family="monitoring",
            ),
        ),
        Kind(
            "keys: a one-megabyte key",
            raw_headers(
                (("message-id", b"{run}-bk-{n}"),), None, family="monitoring", key=b"k" * MB
            ),
        ),
        Kind(
            "keys: a key that is not UTF-8",
            raw_headers(
                (("message-id", b"{run}-nk-{n}"),), None, family="monitoring", key=b"\xff\x00\xfe"
            ),
        ),
        Kind(
            "keys: an empty value",
            raw_headers((("message-id", b"{run}-tb-{n}"),), "hl7.no_msh", value=b""),
        ),
        Kind("headers: one id reused for another patient's message", reused_id),
        Kind("headers: the same message sent twice", same_twice),
        Kind("headers: a forged inbound-message-id and correlation-id", spoofed_inbound_id),
        Kind("headers: no message-id (MSH-10 is the id)", derived_id),
        Kind("headers: no message-id (Bundle id and version are the id)", fhir_derived_id),
    ]


def kinds() -> list[Kind]:
    """Every kind of the corpus."""
    return [*fhir_kinds(), *hl7_kinds(), *dicom_kinds(), *header_kinds()]


def corpus(run: str, scale: int = 1) -> list[FeedMessage]:
    """``scale`` variants of each kind (one of each large kind), each message labelled
    with its kind, in a shuffled order; the messages of one variant stay in their order
    (an original before the message that reuses its id). The run names the random
    seed, so every run sends new ids (content-derived ones too) and can be replayed."""
    rng = random.Random(run)
    groups: list[list[FeedMessage]] = []
    for kind in kinds():
        for _ in range(1 if kind.large else scale):
            groups.append([replace(m, kind=kind.name) for m in kind.make(rng, run)])
    rng.shuffle(groups)
    return [message for group in groups for message in group]
