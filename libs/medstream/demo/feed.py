"""A synthetic hospital feed for the demo, the end-to-end tests and the benchmarks.

Every patient is admitted (HL7 ADT^A01), charted every ``every_minutes`` minutes
(vital-sign panels as FHIR Observations for half the patients and HL7 ORU^R01 for the
others), gets a nursing note (FHIR DocumentReference or HL7 MDM^T02) and a radiology
report (FHIR DiagnosticReport), and has a chest radiograph (DICOM CR). Physiology comes
from the deterioration simulator, reports from the notes generator and films from the
imaging phantoms, so every model sees what it was built for. Malformed messages from
``medstream.demo.malformed`` are mixed in.

Messages carry a ``message-id`` header, and each says which model family should
answer it (``family``) or which dead-letter code should reject it (``expect_code``).
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from medstream.demo.malformed import malformed_inputs
from medstream.imaging.phantom import phantom, to_dicom
from medstream.monitoring.news2 import Observations
from medstream.monitoring.simulator import simulate_patient
from medstream.notes.generator import report as synthetic_report
from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR, EHR_INBOUND_HL7V2

FAMILY_NAMES = ("Okafor", "Lindqvist", "Moreau", "Haddad", "Nakamura", "Brennan", "Silva")
GIVEN_NAMES = ("Ada", "Tomas", "Ines", "Kwame", "Mei", "Rohan", "Elena", "Jonas", "Priya")
NURSING = (
    "Patient settled overnight. Mobilising with assistance. Eating and drinking well.",
    "Reports mild breathlessness on exertion. Observations reviewed with the ward team.",
    "Family visited. Pain controlled with regular paracetamol. Skin intact.",
)
VITAL_LOINC = {
    "heart_rate": ("8867-4", "Heart rate", "/min"),
    "respiratory_rate": ("9279-1", "Respiratory rate", "/min"),
    "spo2": ("59408-5", "Oxygen saturation", "%"),
    "systolic_bp": ("8480-6", "Systolic blood pressure", "mm[Hg]"),
    "temperature": ("8310-5", "Body temperature", "Cel"),
}


@dataclass(frozen=True)
class FeedMessage:
    """One message an EHR would publish, and what should become of it.

    ``message_id`` is the key MedStream records it under (the ledger's key). By default
    it is sent as the ``message-id`` header with a ``source-system``; ``headers``
    replaces both with exactly what a sender set, for input we did not make.
    """

    topic: str
    value: bytes
    key: str | bytes | None
    message_id: str
    family: str | None = None  # the model family that should answer it
    expect_code: str | None = None  # or the dead-letter code that should reject it
    kind: str = ""
    expect_stage: str | None = None  # the stage that dead-letters it (None: any)
    unused: bool = False  # valid, but nothing in it is for a model: received, no more
    headers: tuple[tuple[str, bytes], ...] | None = None


@dataclass(frozen=True)
class Feed:
    """The whole feed, in sending order."""

    messages: list[FeedMessage]
    patients: list[str]

    def count(self, *, family: str | None = None, malformed: bool | None = None) -> int:
        """How many messages match."""
        return sum(
            1
            for m in self.messages
            if (family is None or m.family == family)
            and (malformed is None or (m.expect_code is not None) == malformed)
        )


def hospital_feed(
    *,
    patients: int = 50,
    hours: int = 24,
    every_minutes: int = 15,
    malformed: int = 40,
    seed: int = 2026,
    start: datetime | None = None,
    run: str = "demo",
    documents: bool = True,
) -> Feed:
    """The feed of ``patients`` admitted at ``start`` and followed for ``hours``;
    ``documents=False`` leaves out the notes, reports and films (vital signs only)."""
    start = start or datetime(2026, 3, 14, 7, 0, tzinfo=UTC)
    rng = np.random.default_rng(seed)
    text_rng = random.Random(seed)
    slots = hours * 60 // every_minutes
    per_slot: list[list[FeedMessage]] = [[] for _ in range(slots)]
    admissions = []
    ids = [f"{run.upper()}{i:04d}" for i in range(patients)]
    for i, mrn in enumerate(ids):
        name = (text_rng.choice(FAMILY_NAMES), text_rng.choice(GIVEN_NAMES))
        admissions.append(_admission(mrn, name, start, f"{run}-{mrn}-adt"))
        stay = simulate_patient(rng, mrn, stay_hours=max(hours + 1, 24))
        as_fhir = i % 2 == 0
        for slot in range(slots):
            when = start + timedelta(minutes=slot * every_minutes)
            observation = _at(stay.times, stay.observations, slot * every_minutes / 60)
            message_id = f"{run}-{mrn}-vitals-{slot:03d}"
            value = (
                _vitals_fhir(mrn, when, observation)
                if as_fhir
                else _vitals_oru(mrn, name, when, observation, message_id)
            )
            topic = EHR_INBOUND_FHIR.name if as_fhir else EHR_INBOUND_HL7V2.name
            # Before the first charting nothing is recorded: the message is valid and
            # holds nothing for a model (acknowledged as unused, no result).
            charted = bool(_values(observation)) or observation.consciousness is not None
            per_slot[slot].append(
                FeedMessage(topic, value, mrn, message_id, family="monitoring", kind="vitals")
                if charted or observation.on_oxygen
                else FeedMessage(topic, value, mrn, message_id, kind="vitals", unused=True)
            )
        if not documents:
            continue
        note_slot, report_slot, film_slot = (int(rng.integers(1, slots)) for _ in range(3))
        note_time = start + timedelta(minutes=note_slot * every_minutes)
        note_id = f"{run}-{mrn}-note"
        note = (
            _document_reference(mrn, note_time, text_rng.choice(NURSING))
            if as_fhir
            else _mdm(mrn, name, note_time, text_rng.choice(NURSING), note_id)
        )
        per_slot[note_slot].append(
            FeedMessage(
                EHR_INBOUND_FHIR.name if as_fhir else EHR_INBOUND_HL7V2.name,
                note,
                mrn,
                note_id,
                family="notes",
                kind="note",
            )
        )
        report_time = start + timedelta(minutes=report_slot * every_minutes)
        per_slot[report_slot].append(
            FeedMessage(
                EHR_INBOUND_FHIR.name,
                radiology_report(mrn, report_time, synthetic_report(text_rng).text),
                mrn,
                f"{run}-{mrn}-report",
                family="notes",
                kind="radiology_report",
            )
        )
        film = phantom(rng)
        per_slot[film_slot].append(
            FeedMessage(
                EHR_INBOUND_DICOM.name,
                to_dicom(film.image, patient_id=mrn, seed=seed * 1000 + i),
                mrn,
                f"{run}-{mrn}-film",
                family="imaging",
                kind="radiograph",
            )
        )
    bad = [
        FeedMessage(topic, value, None, f"{run}-bad-{n:04d}", expect_code=code, kind="malformed")
        for n, (topic, value, code) in enumerate(malformed_inputs(malformed, seed))
    ]
    for message in bad:
        per_slot[int(rng.integers(0, slots))].append(message)
    return Feed([*admissions, *(m for slot in per_slot for m in slot)], ids)


def _at(times: list[float], observations: list[Observations], hour: float) -> Observations:
    """The simulator's last observation set at or before ``hour`` (the first before it)."""
    index = max(0, int(np.searchsorted(np.asarray(times), hour, side="right")) - 1)
    return observations[index]


def _hl7_time(when: datetime) -> str:
    return when.strftime("%Y%m%d%H%M%S")


def _msh(message_type: str, when: datetime, control_id: str) -> str:
    stamp = _hl7_time(when)
    return f"MSH|^~\\&|DEMO-EHR|HOSP|MEDSTREAM|HOSP|{stamp}||{message_type}|{control_id}|P|2.5.1"


def _pid(mrn: str, name: tuple[str, str]) -> str:
    return (
        f"PID|1||{mrn}^^^HOSP^MR||{name[0]}^{name[1]}||19520614|F|||1 Harbour Rd^^Portsmouth^^03801"
    )


def _admission(mrn: str, name: tuple[str, str], when: datetime, control_id: str) -> FeedMessage:
    text = "\r".join(
        [
            _msh("ADT^A01^ADT_A01", when, control_id),
            f"EVN|A01|{_hl7_time(when)}",
            _pid(mrn, name),
            "PV1|1|I|WARD7^12^A",
        ]
    )
    return FeedMessage(EHR_INBOUND_HL7V2.name, text.encode(), mrn, control_id, kind="admission")


def _values(observation: Observations) -> dict[str, float]:
    return {
        vital: float(value)
        for vital in VITAL_LOINC
        if (value := getattr(observation, vital)) is not None
    }


def _vitals_oru(
    mrn: str, name: tuple[str, str], when: datetime, observation: Observations, control_id: str
) -> bytes:
    stamp = _hl7_time(when)
    segments = [
        _msh("ORU^R01^ORU_R01", when, control_id),
        _pid(mrn, name),
        "OBR|1|||VS^Vital signs",
    ]
    for n, (vital, value) in enumerate(_values(observation).items(), start=1):
        code, label, unit = VITAL_LOINC[vital]
        segments.append(f"OBX|{n}|NM|{code}^{label}^LN||{value:g}|{unit}|||||F|||{stamp}")
    if observation.consciousness is not None:
        segments.append(
            f"OBX|{len(segments)}|CWE|80288-4^Level of consciousness^LN||"
            f"{observation.consciousness.value}||||||F|||{stamp}"
        )
    if observation.on_oxygen:
        segments.append(f"OBX|{len(segments)}|NM|3150-0^Inhaled oxygen^LN||2|L/min|||||F|||{stamp}")
    return "\r".join(segments).encode()


def _vitals_fhir(mrn: str, when: datetime, observation: Observations) -> bytes:
    components = [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": label}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org"},
        }
        for vital, value in _values(observation).items()
        for code, label, unit in [VITAL_LOINC[vital]]
    ]
    if observation.consciousness is not None:
        components.append(
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "80288-4"}]},
                "valueCodeableConcept": {"text": observation.consciousness.value},
            }
        )
    if observation.on_oxygen:
        components.append(
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "3150-0"}]},
                "valueQuantity": {"value": 2, "unit": "L/min"},
            }
        )
    panel = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]},
        "subject": {"reference": f"Patient/{mrn}"},
        "effectiveDateTime": when.isoformat(),
        "component": components,
    }
    return json.dumps(panel).encode()


def _attachment(text: str) -> dict[str, str]:
    return {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}


def _document_reference(mrn: str, when: datetime, text: str) -> bytes:
    document = {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": "http://loinc.org", "code": "34746-8"}]},
        "subject": {"reference": f"Patient/{mrn}"},
        "date": when.isoformat(),
        "content": [{"attachment": _attachment(text)}],
    }
    return json.dumps(document).encode()


def _mdm(mrn: str, name: tuple[str, str], when: datetime, text: str, control_id: str) -> bytes:
    stamp = _hl7_time(when)
    return "\r".join(
        [
            _msh("MDM^T02^MDM_T02", when, control_id),
            f"EVN|T02|{stamp}",
            _pid(mrn, name),
            "PV1|1|I|WARD7^12^A",
            f"TXA|1|NN^Nursing note|TX|{stamp}||||||||{control_id}||||||AU",
            f"OBX|1|TX|NOTE^Nursing note||{text}||||||F",
        ]
    ).encode()


def radiology_report(mrn: str, when: datetime, text: str) -> bytes:
    """A FHIR DiagnosticReport (category RAD) with ``text`` as its plain-text form."""
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD"}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "36643-5"}]},
        "subject": {"reference": f"Patient/{mrn}"},
        "issued": when.isoformat(),
        "presentedForm": [_attachment(text)],
    }
    return json.dumps(report).encode()
