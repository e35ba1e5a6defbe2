"""FHIR R4 resources from model results: pure functions, no I/O.

- imaging and notes: a DiagnosticReport whose ``result`` lists one Observation per
  finding;
- monitoring: a RiskAssessment whose ``basis`` is the NEWS2 Observation;
- every result: a Provenance naming the model (a contained Device with its version and
  SHA-256) and the inbound message ids it came from.

Everything a model asserted carries ``meta.security`` AIAST and status
``preliminary``: nothing here was reviewed by a clinician. The NEWS2 Observation is the
RCP chart applied by rule, not a model's assertion, so it is ``final`` and unlabelled.
Every resource references the real patient and has an id derived from the result
event, so a redelivered result makes the same ids.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medstream.clinical import ImagingResult, MonitoringResult, NotesResult
from medstream.fhir_r4 import (
    AIAST,
    CHEXPERT_SYSTEM,
    COMPONENT_SYSTEM,
    DATA_ABSENT_REASON,
    INTERPRETATION,
    MESSAGE_ID_SYSTEM,
    MODEL_CHECKSUM_SYSTEM,
    OBSERVATION_CATEGORY,
    RESULT_KIND_SYSTEM,
    SNOMED,
    UCUM,
    V2_0074,
    validated,
)
from medstream.monitoring.news2 import PARAMETERS as NEWS2_PARAMETERS

ModelResult = MonitoringResult | ImagingResult | NotesResult
ID_NAMESPACE = uuid.UUID("6f6d6564-7374-7265-616d-000000000005")
NOT_FOR_CLINICAL_USE = (
    "Reference model trained on synthetic data: not for clinical use. "
    "AI-asserted and not reviewed by a clinician."
)
# A notes finding's status as SNOMED CT qualifier values (the Observation's value) and
# as HL7 v3 ObservationInterpretation (its interpretation), two standard readings.
STATUS_VALUE = {
    "present": ("52101004", "Present"),
    "absent": ("2667000", "Absent"),
    "uncertain": ("42425007", "Equivocal"),
}
STATUS_INTERPRETATION = {
    "present": ("POS", "Positive"),
    "absent": ("NEG", "Negative"),
    "uncertain": ("IND", "Indeterminate"),
}
IMAGING_THRESHOLD = 0.5


@dataclass(frozen=True)
class PatientLink:
    """The real patient behind a pseudonym, as the vault gave it at the boundary."""

    ehr_patient_id: str
    identifiers: list[dict[str, str]]
    offset_days: int

    def reference(self) -> dict[str, Any]:
        """A FHIR Reference to the EHR's own Patient, with its first identifier."""
        reference: dict[str, Any] = {"reference": f"Patient/{self.ehr_patient_id}"}
        usable = [
            {"system": i["system"], "value": i["value"]}
            for i in self.identifiers
            if i.get("value") and i.get("system") and not i["system"].startswith("fhir:")
        ]
        if usable:
            reference["identifier"] = usable[0]
        return reference

    def unshift(self, moment: datetime) -> datetime:
        """A de-identified (shifted) time back on the patient's real calendar."""
        return moment - timedelta(days=self.offset_days)


@dataclass(frozen=True)
class OutboundResource:
    """One resource to store and publish; ``kind`` is unique within its result."""

    kind: str
    resource: dict[str, Any]

    @property
    def resource_type(self) -> str:
        """The FHIR resourceType."""
        return str(self.resource["resourceType"])

    @property
    def id(self) -> str:
        """The resource's logical id."""
        return str(self.resource["id"])


def model_family(result: ModelResult) -> str:
    """imaging, monitoring or notes."""
    return {MonitoringResult: "monitoring", ImagingResult: "imaging", NotesResult: "notes"}[
        type(result)
    ]


def build(
    result: ModelResult, *, result_event_id: str, patient: PatientLink, issued: datetime
) -> list[OutboundResource]:
    """The validated resources of one result, in publication order: observations, then
    the report or risk assessment, then the Provenance that covers them all."""
    maker = _Maker(result_event_id, patient, issued, result)
    if isinstance(result, MonitoringResult):
        made = maker.monitoring(result)
    elif isinstance(result, ImagingResult):
        made = maker.imaging(result)
    else:
        made = maker.notes(result)
    made.append(maker.provenance(made, result))
    return [OutboundResource(r.kind, validated(r.resource)) for r in made]


class _Maker:
    def __init__(
        self, event_id: str, patient: PatientLink, issued: datetime, result: ModelResult
    ) -> None:
        self.event_id = event_id
        self.patient = patient
        self.issued = issued.isoformat()
        self.method = {"text": f"MedStream model {result.model} {result.model_version}"}

    def _id(self, kind: str) -> str:
        return str(uuid.uuid5(ID_NAMESPACE, f"{self.event_id}|{kind}"))

    def _base(self, resource_type: str, kind: str, *, ai: bool = True) -> dict[str, Any]:
        resource: dict[str, Any] = {"resourceType": resource_type, "id": self._id(kind)}
        if ai:
            resource["meta"] = {"security": [AIAST]}
        return resource

    def _observation(
        self, kind: str, name: str, *, category: str, value: dict[str, Any]
    ) -> OutboundResource:
        resource = {
            **self._base("Observation", kind),
            "status": "preliminary",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
            "code": {
                "coding": [{"system": CHEXPERT_SYSTEM, "code": _slug(name), "display": name}],
                "text": name,
            },
            "subject": self.patient.reference(),
            "issued": self.issued,
            "method": self.method,
            **value,
        }
        return OutboundResource(kind, resource)

    def _report(
        self,
        *,
        code: str,
        display: str,
        observations: list[OutboundResource],
        conclusion: str,
        presented: list[dict[str, Any]],
    ) -> OutboundResource:
        resource = {
            **self._base("DiagnosticReport", "DiagnosticReport"),
            "status": "preliminary",
            "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
            "code": {
                "coding": [{"system": RESULT_KIND_SYSTEM, "code": code, "display": display}],
                "text": display,
            },
            "subject": self.patient.reference(),
            "issued": self.issued,
            "result": [{"reference": f"Observation/{o.id}"} for o in observations],
            "conclusion": conclusion,
            "presentedForm": presented,
        }
        return OutboundResource("DiagnosticReport", resource)

    def imaging(self, result: ImagingResult) -> list[OutboundResource]:
        observations = []
        for name, probability in result.labels.items():
            code, display = (
                ("POS", "Positive") if probability >= IMAGING_THRESHOLD else ("NEG", "Negative")
            )
            observations.append(
                self._observation(
                    f"Observation:{name}",
                    name,
                    category="imaging",
                    value={
                        "valueQuantity": _probability(probability),
                        "interpretation": [_interpretation(code, display)],
                    },
                )
            )
        positive = [n for n, p in result.labels.items() if p >= IMAGING_THRESHOLD]
        conclusion = (
            f"Findings at probability {IMAGING_THRESHOLD} or more: "
            f"{', '.join(positive) or 'none'}. {NOT_FOR_CLINICAL_USE}"
        )
        heatmap = {
            "contentType": "image/png",
            "data": result.heatmap_png_base64,
            "title": f"Grad-CAM heatmap for {result.explained}",
        }
        report = self._report(
            code="chest-radiograph-findings",
            display="AI chest radiograph findings",
            observations=observations,
            conclusion=conclusion,
            presented=[heatmap],
        )
        return [*observations, report]

    def notes(self, result: NotesResult) -> list[OutboundResource]:
        observations = []
        for name, label in result.labels.items():
            if label.status not in STATUS_VALUE:
                continue  # not mentioned: the report says nothing about it
            value_code, value_display = STATUS_VALUE[label.status]
            code, display = STATUS_INTERPRETATION[label.status]
            observations.append(
                self._observation(
                    f"Observation:{name}",
                    name,
                    category="exam",
                    value={
                        "valueCodeableConcept": {
                            "coding": [
                                {"system": SNOMED, "code": value_code, "display": value_display}
                            ],
                            "text": label.status,
                        },
                        "interpretation": [_interpretation(code, display)],
                        "component": [
                            {
                                "code": {
                                    "coding": [{"system": COMPONENT_SYSTEM, "code": "probability"}],
                                    "text": "Calibrated model probability that the finding "
                                    "is present",
                                },
                                "valueQuantity": _probability(label.probability),
                            },
                            *(
                                {
                                    "code": {
                                        "coding": [
                                            {
                                                "system": COMPONENT_SYSTEM,
                                                "code": f"probability-{status}",
                                            }
                                        ],
                                        "text": f"Model probability that the report states "
                                        f"it as {status.replace('_', ' ')}",
                                    },
                                    "valueQuantity": _probability(value),
                                }
                                for status, value in (label.scores or {}).items()
                            ),
                        ],
                    },
                )
            )
        stated = ", ".join(
            f"{n}: {label.status}"
            for n, label in result.labels.items()
            if label.status in STATUS_VALUE
        )
        words = [s for s in result.explanation if s.text]
        drivers = ", ".join(f"'{s.text}' ({s.weight:+.2f})" for s in words[:8])
        conclusion = (
            f"Findings stated in the {result.document_kind.replace('_', ' ')}: "
            f"{stated or 'none'}. Words that drove them: {drivers or 'none'}. "
            f"{NOT_FOR_CLINICAL_USE}"
        )
        explanation = {
            "contentType": "application/json",
            "title": "Word attributions (offsets index the de-identified text)",
            "data": _b64(json.dumps([s.model_dump() for s in result.explanation], sort_keys=True)),
        }
        report = self._report(
            code="report-findings",
            display="AI findings extracted from a clinical report",
            observations=observations,
            conclusion=conclusion,
            presented=[explanation],
        )
        return [*observations, report]

    def monitoring(self, result: MonitoringResult) -> list[OutboundResource]:
        when = self.patient.unshift(result.scored_at)
        news2 = OutboundResource(
            "Observation:NEWS2",
            {
                **self._base("Observation", "Observation:NEWS2", ai=False),
                "status": "final" if result.news2_complete else "preliminary",
                "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "survey"}]}],
                "code": {
                    "coding": [
                        {
                            "system": RESULT_KIND_SYSTEM,
                            "code": "news2-total",
                            "display": "NEWS2 total score",
                        }
                    ],
                    "text": "NEWS2 total score (RCP 2017)",
                },
                "subject": self.patient.reference(),
                "effectiveDateTime": when.isoformat(),
                "issued": self.issued,
                "valueInteger": result.news2,
                "interpretation": [{"text": f"NEWS2 clinical risk: {result.news2_risk}"}],
                "component": _news2_components(result),
            },
        )
        summary = _news2_summary(result)
        if summary:
            news2.resource["note"] = [{"text": summary}]
        ranked = sorted(result.explanation.items(), key=lambda kv: -abs(kv[1]))
        drivers = ", ".join(f"{vital} {weight:+.2f}" for vital, weight in ranked)
        horizons = result.risk_by_horizon or {str(result.horizon_hours): result.risk}
        notes = [{"text": f"Vital-sign attributions (Integrated Gradients): {drivers}."}]
        if result.explanation_notes:
            why = "; ".join(f"{vital}: {text}" for vital, text in result.explanation_notes.items())
            notes.append({"text": f"Inputs behind the attributions: {why}."})
        if summary:
            notes.append({"text": f"NEWS2 basis: {summary}"})
        assessment = OutboundResource(
            "RiskAssessment",
            {
                **self._base("RiskAssessment", "RiskAssessment"),
                "status": "preliminary",
                "code": {
                    "coding": [
                        {
                            "system": RESULT_KIND_SYSTEM,
                            "code": "deterioration-risk",
                            "display": "Risk of clinical deterioration",
                        }
                    ]
                },
                "subject": self.patient.reference(),
                "occurrenceDateTime": when.isoformat(),
                "method": self.method,
                "basis": [{"reference": f"Observation/{news2.id}"}],
                "prediction": [
                    {
                        "outcome": {
                            "text": "Deterioration (NEWS2 reaching 7, unplanned ICU transfer "
                            "or death)"
                        },
                        "probabilityDecimal": risk,
                        "whenPeriod": {
                            "start": when.isoformat(),
                            "end": (when + timedelta(hours=int(hours))).isoformat(),
                        },
                    }
                    for hours, risk in sorted(horizons.items(), key=lambda kv: int(kv[0]))
                ],
                "note": [*notes, {"text": NOT_FOR_CLINICAL_USE}],
            },
        )
        return [news2, assessment]

    def provenance(self, made: list[OutboundResource], result: ModelResult) -> OutboundResource:
        device = {
            "resourceType": "Device",
            "id": "model",
            "identifier": [{"system": MODEL_CHECKSUM_SYSTEM, "value": result.model_checksum}],
            "deviceName": [{"name": f"MedStream {result.model} model", "type": "model-name"}],
            "version": [{"value": result.model_version}],
            "note": [{"text": "A model package; the identifier is its SHA-256 manifest digest."}],
        }
        resource = {
            **self._base("Provenance", "Provenance", ai=False),
            "contained": [device],
            "target": [{"reference": f"{r.resource_type}/{r.id}"} for r in made],
            "recorded": self.issued,
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": "CREATE",
                    }
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/"
                                "provenance-participant-type",
                                "code": "assembler",
                            }
                        ]
                    },
                    "who": {
                        "reference": "#model",
                        "display": f"{result.model} {result.model_version} "
                        f"(sha256 {result.model_checksum[:12]})",
                    },
                }
            ],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {"system": MESSAGE_ID_SYSTEM, "value": message_id},
                        "display": "inbound EHR message",
                    },
                }
                for message_id in result.inbound_message_ids
            ],
        }
        return OutboundResource("Provenance", resource)


def _news2_components(result: MonitoringResult) -> list[dict[str, Any]]:
    """The NEWS2 Observation's components: each parameter's sub-score (or why it has
    none), how old each carried-forward value is, the red-score flag, whether the score
    is partial and which SpO2 scale was used."""

    def code(name: str, text: str) -> dict[str, Any]:
        return {"coding": [{"system": COMPONENT_SYSTEM, "code": name}], "text": text}

    parts: list[dict[str, Any]] = []
    for parameter in NEWS2_PARAMETERS:  # all seven, so a reader sees what was scored 0
        vital = parameter.value
        label = vital.replace("_", " ")
        component: dict[str, Any] = {
            "code": code(f"news2-{vital.replace('_', '-')}", f"NEWS2 {label} score")
        }
        if vital in result.news2_missing or vital not in result.news2_parts:
            component["dataAbsentReason"] = {
                "coding": [{"system": DATA_ABSENT_REASON, "code": "not-performed"}],
                "text": "No value within the staleness limit; scored 0",
            }
        else:
            component["valueInteger"] = result.news2_parts[vital]
        parts.append(component)
    for vital, age in result.news2_stale_minutes.items():
        if age > 0:
            parts.append(
                {
                    "code": code(
                        f"news2-{vital.replace('_', '-')}-age",
                        f"Age of the carried-forward {vital.replace('_', ' ')} value",
                    ),
                    "valueQuantity": {
                        "value": round(float(age), 1),
                        "unit": "min",
                        "system": UCUM,
                        "code": "min",
                    },
                }
            )
    parts += [
        {
            "code": code("news2-partial", "Some parameter had no value in its staleness limit"),
            "valueBoolean": result.news2_partial,
        },
        {
            "code": code("news2-red-score", "A single parameter scored 3 (RCP red score)"),
            "valueBoolean": result.news2_red_score,
        },
        {
            "code": code("news2-spo2-scale", "NEWS2 SpO2 scale used (2: hypercapnic target)"),
            "valueInteger": result.news2_spo2_scale,
        },
    ]
    return parts


def _news2_summary(result: MonitoringResult) -> str:
    """One sentence on what the NEWS2 total stands on, empty when nothing to say."""
    said: list[str] = []
    if result.news2_missing:
        said.append(
            "partial score: no value for " + ", ".join(result.news2_missing) + " (scored 0)"
        )
    carried = {v: age for v, age in result.news2_stale_minutes.items() if age > 0}
    if carried:
        said.append(
            "carried forward: " + ", ".join(f"{v} {age:.0f} min old" for v, age in carried.items())
        )
    if result.news2_red_score:
        said.append("red score: a single parameter scored 3")
    if result.news2_spo2_scale == 2:
        said.append("SpO2 scale 2 (target 88-92%)")
    return "; ".join(said) + "." if said else ""


def _slug(name: str) -> str:
    return name.lower().replace(" ", "-")


def _probability(value: float) -> dict[str, Any]:
    return {"value": round(float(value), 4), "unit": "probability", "system": UCUM, "code": "1"}


def _interpretation(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
