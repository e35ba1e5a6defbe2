"""FHIR R4 write-back resources: valid, about the real patient, AI-made ones labelled
AIAST, times back on the real calendar, a Provenance naming the model and inputs."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from fhir.resources.R4B import get_fhir_model_class

from medstream.clinical import (
    ImagingResult,
    MonitoringResult,
    NoteLabel,
    NoteSpan,
    NotesResult,
)
from medstream.fhir_r4 import AIAST, InvalidOutboundResource, validated
from medstream.writeback.resources import ModelResult, PatientLink, build

PATIENT = PatientLink(
    "EHR-778",
    [
        {"system": "fhir:Patient.id", "value": "EHR-778"},
        {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-12345"},
    ],
    offset_days=40,
)
ISSUED = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
COMMON = {
    "patient": "psn-abcdefghijklmnopqrst",
    "model_version": "1.0.0",
    "model_checksum": "ab" * 32,
    "inbound_message_ids": ["msg-1"],
}


def monitoring() -> MonitoringResult:
    return MonitoringResult(
        scored_at=datetime(2027, 1, 7, 12, 0, tzinfo=UTC),
        risk=0.42,
        horizon_hours=12,
        news2=7,
        news2_risk="high",
        news2_complete=True,
        explanation={"respiratory_rate": 0.6, "spo2": -0.4},
        model="monitoring",
        **COMMON,
    )


def imaging() -> ImagingResult:
    return ImagingResult(
        sop_instance_uid="2.25.1",
        labels={"No Finding": 0.1, "Cardiomegaly": 0.9},
        explained="Cardiomegaly",
        heatmap_png_base64=base64.b64encode(b"\x89PNG\r\n\x1a\n").decode(),
        model="imaging",
        **COMMON,
    )


def notes() -> NotesResult:
    labels = {
        "Pleural Effusion": NoteLabel(status="present", probability=0.93),
        "Pneumothorax": NoteLabel(status="absent", probability=0.88),
        "Pneumonia": NoteLabel(status="uncertain", probability=0.61),
        "Edema": NoteLabel(status="not_mentioned", probability=0.99),
    }
    return NotesResult(
        document_kind="radiology_report",
        labels=labels,
        explanation=[NoteSpan(start=6, end=14, weight=1.0, text="effusion")],
        model="notes",
        **COMMON,
    )


@pytest.mark.parametrize("make", [monitoring, imaging, notes])
def test_every_resource_is_valid_r4_about_the_real_patient(make: type[ModelResult]) -> None:
    made = build(make(), result_event_id="ev-1", patient=PATIENT, issued=ISSUED)
    assert made[-1].resource_type == "Provenance"
    ids = [f"{r.resource_type}/{r.id}" for r in made]
    assert len(set(ids)) == len(ids)
    for item in made:
        get_fhir_model_class(item.resource_type).model_validate(item.resource)
        text = json.dumps(item.resource)
        assert "psn-" not in text, "a pseudonym crossed the EHR boundary"
        if item.resource_type != "Provenance":
            subject = item.resource["subject"]
            assert subject["reference"] == "Patient/EHR-778"
            assert subject["identifier"]["value"] == "MRN-12345"
    provenance = made[-1].resource
    assert [t["reference"] for t in provenance["target"]] == ids[:-1]
    device = provenance["contained"][0]
    assert device["version"][0]["value"] == "1.0.0"
    assert device["identifier"][0]["value"] == "ab" * 32
    assert provenance["entity"][0]["what"]["identifier"]["value"] == "msg-1"


@pytest.mark.parametrize("make", [monitoring, imaging, notes])
def test_ai_made_resources_carry_aiast_and_are_preliminary(make: type[ModelResult]) -> None:
    for item in build(make(), result_event_id="ev-1", patient=PATIENT, issued=ISSUED):
        labelled = AIAST in item.resource.get("meta", {}).get("security", [])
        ai_made = item.kind not in {"Provenance", "Observation:NEWS2"}
        assert labelled == ai_made, item.kind
        if ai_made:
            assert item.resource["status"] == "preliminary"


def test_same_result_event_gives_the_same_ids_and_another_gives_others() -> None:
    def ids(event: str) -> list[str]:
        return [r.id for r in build(notes(), result_event_id=event, patient=PATIENT, issued=ISSUED)]

    assert ids("ev-1") == ids("ev-1")
    assert not set(ids("ev-1")) & set(ids("ev-2"))


def test_monitoring_times_are_unshifted_and_news2_is_the_basis() -> None:
    news2, assessment, _ = build(monitoring(), result_event_id="e", patient=PATIENT, issued=ISSUED)
    assert news2.resource["valueInteger"] == 7
    assert news2.resource["effectiveDateTime"] == "2026-11-28T12:00:00+00:00"
    assert assessment.resource["occurrenceDateTime"] == "2026-11-28T12:00:00+00:00"
    assert assessment.resource["basis"] == [{"reference": f"Observation/{news2.id}"}]
    prediction = assessment.resource["prediction"][0]
    assert prediction["probabilityDecimal"] == 0.42
    assert prediction["whenPeriod"]["end"] == "2026-11-29T00:00:00+00:00"
    assert "not for clinical use" in json.dumps(assessment.resource["note"])


def test_notes_status_is_coded_in_snomed_and_v3_interpretation() -> None:
    made = build(notes(), result_event_id="e", patient=PATIENT, issued=ISSUED)
    observations = {r.resource["code"]["text"]: r.resource for r in made[:-2]}
    assert set(observations) == {"Pleural Effusion", "Pneumothorax", "Pneumonia"}
    expected = {"Pleural Effusion": ("52101004", "POS"), "Pneumothorax": ("2667000", "NEG")}
    expected["Pneumonia"] = ("42425007", "IND")
    for name, (value, interpretation) in expected.items():
        assert observations[name]["valueCodeableConcept"]["coding"][0]["code"] == value
        assert observations[name]["interpretation"][0]["coding"][0]["code"] == interpretation
    report = made[-2].resource
    assert "'effusion' (+1.00)" in report["conclusion"]
    assert len(report["result"]) == 3


def test_imaging_report_carries_the_heatmap_and_probabilities() -> None:
    made = build(imaging(), result_event_id="e", patient=PATIENT, issued=ISSUED)
    report = made[-2].resource
    assert report["presentedForm"][0]["contentType"] == "image/png"
    assert "Cardiomegaly" in report["conclusion"]
    cardio = next(r.resource for r in made if r.kind == "Observation:Cardiomegaly")
    assert cardio["valueQuantity"]["value"] == 0.9


def test_an_invalid_resource_is_refused_naming_the_path() -> None:
    with pytest.raises(InvalidOutboundResource, match="valueQuantity"):
        validated(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "x"},
                "valueQuantity": {"value": "very high"},
            }
        )
