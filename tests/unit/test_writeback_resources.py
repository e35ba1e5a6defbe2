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
    def label(status: str, present: float, absent: float, uncertain: float) -> NoteLabel:
        scores = {
            "present": present,
            "absent": absent,
            "uncertain": uncertain,
            "not_mentioned": round(1 - present - absent - uncertain, 4),
        }
        return NoteLabel(status=status, probability=present, scores=scores)

    labels = {
        "Pleural Effusion": label("present", 0.93, 0.05, 0.02),
        "Pneumothorax": label("absent", 0.02, 0.95, 0.03),
        "Pneumonia": label("uncertain", 0.2, 0.1, 0.7),
        "Edema": label("not_mentioned", 0.0, 0.0, 0.0),
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


def test_news2_detail_travels_in_components_and_notes() -> None:
    """A partial, carried-forward NEWS2 with a red score says so in the Observation
    (components) and the RiskAssessment (notes), and every horizon is a prediction."""
    result = monitoring().model_copy(
        update={
            "news2": 5,
            "news2_complete": False,
            "news2_partial": True,
            "news2_missing": ["consciousness"],
            "news2_stale_minutes": {"temperature": 0.0, "respiratory_rate": 75.0},
            "news2_red_score": True,
            "news2_spo2_scale": 2,
            "news2_parts": {"respiratory_rate": 3, "temperature": 1, "consciousness": 0},
            "risk_by_horizon": {"6": 0.2, "12": 0.42, "24": 0.6},
            "explanation_notes": {"respiratory_rate": "carried forward, 75 min old"},
        }
    )
    news2, assessment, _ = build(result, result_event_id="e", patient=PATIENT, issued=ISSUED)
    assert news2.resource["status"] == "preliminary"
    components = {c["code"]["coding"][0]["code"]: c for c in news2.resource["component"]}
    assert components["news2-respiratory-rate"]["valueInteger"] == 3
    assert "valueInteger" not in components["news2-consciousness"]
    assert components["news2-consciousness"]["dataAbsentReason"]["coding"][0]["code"] == (
        "not-performed"
    )
    assert components["news2-respiratory-rate-age"]["valueQuantity"]["value"] == 75.0
    assert "news2-temperature-age" not in components  # charted in the last row
    assert components["news2-partial"]["valueBoolean"] is True
    assert components["news2-red-score"]["valueBoolean"] is True
    assert components["news2-spo2-scale"]["valueInteger"] == 2
    assert "no value for consciousness" in news2.resource["note"][0]["text"]
    notes = json.dumps(assessment.resource["note"])
    assert "respiratory_rate 75 min old" in notes
    assert "red score" in notes
    assert "carried forward, 75 min old" in notes
    ends = [p["whenPeriod"]["end"] for p in assessment.resource["prediction"]]
    assert ends == [
        "2026-11-28T18:00:00+00:00",
        "2026-11-29T00:00:00+00:00",
        "2026-11-29T12:00:00+00:00",
    ]
    assert [p["probabilityDecimal"] for p in assessment.resource["prediction"]] == [0.2, 0.42, 0.6]


def test_a_complete_news2_is_final_with_every_part() -> None:
    result = monitoring().model_copy(
        update={"news2_parts": {"heart_rate": 1, "spo2": 0}, "news2_stale_minutes": {}}
    )
    news2, _, _ = build(result, result_event_id="e", patient=PATIENT, issued=ISSUED)
    assert news2.resource["status"] == "final"
    assert "note" not in news2.resource
    components = {c["code"]["coding"][0]["code"]: c for c in news2.resource["component"]}
    assert components["news2-partial"]["valueBoolean"] is False
    assert components["news2-heart-rate"]["valueInteger"] == 1
    assert components["news2-temperature"]["dataAbsentReason"]  # not in the parts: no value


def test_every_news2_parameter_has_a_component() -> None:
    news2, _, _ = build(monitoring(), result_event_id="e", patient=PATIENT, issued=ISSUED)
    codes = {c["code"]["coding"][0]["code"] for c in news2.resource["component"]}
    assert {
        "news2-respiratory-rate",
        "news2-spo2",
        "news2-supplemental-oxygen",
        "news2-systolic-bp",
        "news2-heart-rate",
        "news2-consciousness",
        "news2-temperature",
    } <= codes


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


def test_a_notes_observation_carries_p_present_and_each_status_score() -> None:
    made = build(notes(), result_event_id="ev-1", patient=PATIENT, issued=ISSUED)
    observations = {r.kind: r.resource for r in made if r.resource_type == "Observation"}
    assert "Observation:Edema" not in observations  # not mentioned: nothing stated
    components = {
        c["code"]["coding"][0]["code"]: c["valueQuantity"]["value"]
        for c in observations["Observation:Pneumonia"]["component"]
    }
    assert components["probability"] == 0.2  # P(present), whatever the status
    assert components["probability-uncertain"] == 0.7
    assert sum(v for k, v in components.items() if k != "probability") == pytest.approx(1)
