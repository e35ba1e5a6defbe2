"""The de-identification engine: one call per record, shared by the deid service, the
``medstream deid`` CLI and ``bench/deid``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import hl7

from medstream.clinical import ClinicalPayload, IdentifiedRecord, SourceFormat
from medstream.deid.detect import load_detector
from medstream.deid.keys import Pseudonymiser
from medstream.deid.policy import Policy, load_policy
from medstream.deid.replace import (
    Detector,
    PatientScope,
    Replacement,
    ReplacementMode,
    TextScrubber,
)
from medstream.deid.structured import (
    RecordContext,
    deidentify_dicom,
    deidentify_fhir,
    deidentify_hl7,
    dicom_known_values,
    fhir_known_values,
    hl7_known_values,
)
from medstream.deid.text import PhiType, Span
from medstream.errors import InvalidMessage
from medstream.formats import dicom as dicom_format
from medstream.formats import fhir as fhir_format
from medstream.formats import hl7v2 as hl7_format
from medstream.settings import Settings


@dataclass(frozen=True)
class PatientIdentity:
    """What the vault keeps to re-link a pseudonym: the EHR's own ids. Never leaves deid."""

    ehr_patient_id: str
    identifiers: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class DeidOutput:
    """One de-identified record: its source in its own format, and the events in it."""

    format: SourceFormat
    source: str  # FHIR JSON, ER7 text, or DICOM as base64
    pseudonym: str
    payloads: list[ClinicalPayload]
    summary: dict[str, Any]
    identity: PatientIdentity


class DeidEngine:
    """Pseudonymises, date-shifts, generalises and scrubs records by the policy tables."""

    def __init__(
        self,
        keys: Pseudonymiser,
        policy: Policy | None = None,
        mode: ReplacementMode = ReplacementMode.TAG,
        detector: Detector | None = None,
    ) -> None:
        self.keys = keys
        self.policy = policy or load_policy()
        self.scrubber = TextScrubber(keys, mode, detector)

    @classmethod
    def from_settings(cls, settings: Settings) -> DeidEngine:
        """The engine configured by ``MEDSTREAM_DEID_*``, with the ensemble of the
        configured model registry."""
        key = base64.b64decode(settings.deid_key.get_secret_value())
        keys = Pseudonymiser(key, settings.date_shift_max_days)
        return cls(
            keys,
            mode=ReplacementMode(settings.deid_replacement),
            detector=load_detector(settings.model_registry),
        )

    def prepare(self, texts: Sequence[str]) -> None:
        """Run the learned tagger once over many texts (a micro-batch, a file), so the
        records that hold them are then de-identified from its cache."""
        prepare = getattr(self.scrubber.detector, "prepare", None)
        if prepare is not None:
            prepare(texts)

    def texts_of(self, record: IdentifiedRecord) -> list[str]:
        """The free-text values that de-identifying ``record`` will scrub, found by a dry
        run that changes nothing (a record that cannot be de-identified has none)."""
        return self.dry_run(record).texts

    def dry_run(self, record: IdentifiedRecord, offset_days: int | None = None) -> DryRun:
        """De-identify ``record`` with a detector that tags nothing and keeps every text
        it is shown. Its texts are what the real run will scrub. When there are none (a
        vital-sign set, most structured records), the detector was never asked, so the
        dry run's output *is* the real run's, at the same date offset: ``DryRun.output``
        then holds it, and the record need not be de-identified twice."""
        if record.format is SourceFormat.DICOM:
            return DryRun([], None, offset_days)  # no free text, and nothing to reuse
        found: list[str] = []
        dry = DeidEngine(self.keys, self.policy, self.scrubber.mode, detector=_Collector(found))
        offset = (
            self.keys.date_offset(record.ehr_patient_id) if offset_days is None else offset_days
        )
        try:
            output = dry.record(record, offset)
        except InvalidMessage:
            return DryRun([], None, offset)
        return DryRun(found, None if found else output, offset)

    def context(self, patient_key: str, offset_days: int | None = None) -> RecordContext:
        """A fresh context for one record of ``patient_key``."""
        offset = self.keys.date_offset(patient_key) if offset_days is None else offset_days
        return RecordContext(self.keys, self.policy, self.scrubber, patient_key, offset)

    def text(self, text: str, patient_key: str = "") -> tuple[str, list[Replacement]]:
        """Scrub free text; dates shift by ``patient_key``'s offset (none without a key)."""
        offset = self.keys.date_offset(patient_key) if patient_key else 0
        return self.scrubber.scrub(text, PatientScope(patient_key, offset))

    def fhir(
        self, resource: dict[str, Any], patient_key: str, offset_days: int | None = None
    ) -> DeidOutput:
        """De-identify one FHIR resource and normalise what it holds."""
        ctx = self.context(patient_key, offset_days)
        ctx.known += fhir_known_values(resource)
        clean = deidentify_fhir(resource, ctx)
        identity = PatientIdentity(patient_key, _fhir_identifiers(resource))
        return DeidOutput(
            SourceFormat.FHIR,
            json.dumps(clean, sort_keys=True),
            ctx.pseudonym,
            fhir_format.normalise(clean, ctx.pseudonym),
            ctx.summary(),
            identity,
        )

    def hl7v2(self, text: str, patient_key: str, offset_days: int | None = None) -> DeidOutput:
        """De-identify one ER7 message and normalise what it holds."""
        ctx = self.context(patient_key, offset_days)
        message = hl7.parse(hl7_format.normalise_separators(text))
        ctx.known += hl7_known_values(message)
        clean = deidentify_hl7(message, ctx)
        identity = PatientIdentity(patient_key, _hl7_identifiers(message))
        return DeidOutput(
            SourceFormat.HL7V2,
            clean,
            ctx.pseudonym,
            hl7_format.normalise(clean, ctx.pseudonym),
            ctx.summary(),
            identity,
        )

    def dicom(self, raw: bytes, patient_key: str, offset_days: int | None = None) -> DeidOutput:
        """De-identify one DICOM instance; the pixel data is left as it is."""
        ctx = self.context(patient_key, offset_days)
        dataset = dicom_format.read(raw)
        ctx.known += dicom_known_values(dataset)
        clean = dicom_format.to_bytes(deidentify_dicom(dataset, ctx))
        identity = PatientIdentity(
            patient_key, [{"system": "dicom:PatientID", "value": patient_key}]
        )
        return DeidOutput(
            SourceFormat.DICOM,
            base64.b64encode(clean).decode("ascii"),
            ctx.pseudonym,
            dicom_format.normalise(clean, ctx.pseudonym),
            ctx.summary(),
            identity,
        )

    def record(self, record: IdentifiedRecord, offset_days: int | None = None) -> DeidOutput:
        """De-identify an identified record from the ingestion service."""
        if record.format is SourceFormat.FHIR:
            return self.fhir(json.loads(record.source), record.ehr_patient_id, offset_days)
        if record.format is SourceFormat.HL7V2:
            return self.hl7v2(record.source, record.ehr_patient_id, offset_days)
        return self.dicom(base64.b64decode(record.source), record.ehr_patient_id, offset_days)


def _fhir_identifiers(resource: dict[str, Any]) -> list[dict[str, str]]:
    found = (
        [{"system": "fhir:Patient.id", "value": str(resource["id"])}]
        if (resource.get("resourceType") == "Patient" and resource.get("id"))
        else []
    )
    if resource.get("resourceType") == "Patient":
        found += [
            {"system": str(i.get("system") or ""), "value": str(i["value"])}
            for i in resource.get("identifier") or []
            if i.get("value")
        ]
    return found


def _hl7_identifiers(message: hl7.Message) -> list[dict[str, str]]:
    pids = hl7_format.segments(message, "PID")
    if not pids:
        return []
    return [
        {
            "system": hl7_format.field(pids[0], 3, rep, 4) or "hl7:PID-3",
            "type": hl7_format.field(pids[0], 3, rep, 5),
            "value": hl7_format.field(pids[0], 3, rep, 1),
        }
        for rep in range(1, hl7_format.repetitions(pids[0], 3) + 1)
        if hl7_format.field(pids[0], 3, rep, 1)
        # Only what re-linking needs: never the SSN (data minimisation).
        and hl7_format.field(pids[0], 3, rep, 5) not in {"SS", "SSN"}
    ]


@dataclass(frozen=True)
class DryRun:
    """What a dry run found: the record's free texts and, when it has none, the output
    of de-identifying it at ``offset_days``."""

    texts: list[str]
    output: DeidOutput | None
    offset_days: int | None

    def output_at(self, offset_days: int) -> DeidOutput | None:
        """The real run's output, if the dry run's can stand for it at this offset."""
        return self.output if self.offset_days == offset_days else None


@dataclass
class _Collector:
    """A detector that finds nothing and remembers every text it was shown."""

    texts: list[str]

    def detect(self, text: str, known: Iterable[tuple[str, PhiType]] = ()) -> list[Span]:
        self.texts.append(text)
        return []
