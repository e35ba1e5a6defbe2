"""Parsing and normalisation of FHIR R4 (via R4B models), HL7 v2 and real DICOM."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from medstream.clinical import Kind, Vital
from medstream.deadletter import InvalidMessage
from medstream.formats import dicom, fhir, hl7v2

FIXTURES = Path(__file__).parents[1] / "fixtures"
BUNDLE = (FIXTURES / "bundle_r4.json").read_bytes()
ORU = (FIXTURES / "oru_r01.hl7").read_bytes()


def test_r4_bundle_splits_and_resolves_urn_references_to_the_patient() -> None:
    units = fhir.split(fhir.parse(BUNDLE))
    by_id = {u.resource.get("id"): u for u in units}
    assert by_id["example"].kinds == [Kind.PATIENT]
    assert by_id["heart-rate"].ehr_patient_id == "example"  # via the urn:uuid fullUrl
    assert by_id["blood-pressure"].kinds == [Kind.VITALS]
    assert by_id["note-1"].kinds == [Kind.DOCUMENT]
    assert by_id["enc-1"].kinds == []  # valid, unused: counted, not rejected


def test_r4_vital_signs_normalise_with_panel_components() -> None:
    units = {u.resource.get("id"): u for u in fhir.split(fhir.parse(BUNDLE))}
    (hr,) = fhir.normalise(units["heart-rate"].resource, "p")
    assert hr.vitals[0].vital is Vital.HEART_RATE
    assert hr.vitals[0].value == 112
    (bp,) = fhir.normalise(units["blood-pressure"].resource, "p")
    assert {(v.vital, v.value) for v in bp.vitals} == {
        (Vital.SYSTOLIC_BP, 98),
        (Vital.DIASTOLIC_BP, 61),
    }
    (report,) = fhir.normalise(units["cxr-1"].resource, "p")
    assert report.document_kind == "radiology_report"
    assert "pleural effusion" in report.text


def test_fhir_bundle_message_id_is_id_plus_version() -> None:
    assert fhir.derive_message_id(BUNDLE) == "fhir:Bundle/b-20260314-1/_history/1"


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"])
def test_hl7_segment_separators_are_all_accepted(separator: str) -> None:
    text = ORU.decode().replace("\n", separator)
    unit = hl7v2.parse(text.encode())
    assert unit.ehr_patient_id == "00482915"
    assert unit.kinds == [Kind.VITALS, Kind.DOCUMENT]
    vitals, document = hl7v2.normalise(unit.text, "p")
    assert {v.vital for v in vitals.vitals} >= {Vital.HEART_RATE, Vital.SPO2, Vital.CONSCIOUSNESS}
    assert "Effusion & basilar atelectasis" in document.text  # \T\ unescaped
    assert document.text.count("\n") >= 2  # OBX-5 repetitions and the NTE


@pytest.mark.parametrize(
    "version", ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.2"]
)
def test_hl7_versions_2_3_to_2_8_are_accepted(version: str) -> None:
    assert hl7v2.parse(ORU.replace(b"|2.5.1\n", f"|{version}\n".encode())).kinds


@pytest.mark.parametrize("version", ["2.1", "2.2", "2.9", "3.0", ""])
def test_other_hl7_versions_are_rejected(version: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        hl7v2.parse(ORU.replace(b"|2.5.1\n", f"|{version}\n".encode()))
    assert caught.value.code == "hl7.unsupported_version"


def test_hl7_repetitions_and_components() -> None:
    unit = hl7v2.parse(ORU)
    pid = hl7v2.segments(__import__("hl7").parse(unit.text), "PID")[0]
    assert hl7v2.repetitions(pid, 13) == 2
    assert hl7v2.field(pid, 13, 2) == "(617)555-9876"
    assert hl7v2.field(pid, 3, 2, 5) == "SS"
    assert hl7v2.field(pid, 11, 1, 3) == "Boston"


def test_hl7_message_id_is_msh_10() -> None:
    assert hl7v2.derive_message_id(ORU) == "hl7:MSG00042"


def test_real_chest_radiograph_from_pydicom_data() -> None:
    raw = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    unit = dicom.parse(raw, 16 * 1024 * 1024)
    assert unit.kinds == [Kind.IMAGING]
    assert unit.dataset.PhotometricInterpretation == "MONOCHROME1"
    assert (unit.dataset.Rows, unit.dataset.Columns, unit.dataset.BitsStored) == (1955, 1841, 15)
    (event,) = dicom.normalise(raw, "p")
    assert event.modality == "CR"


def test_dicom_size_limit_and_preamble() -> None:
    raw = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    with pytest.raises(InvalidMessage) as too_big:
        dicom.parse(raw, max_bytes=len(raw) - 1)
    assert too_big.value.code == "dicom.too_large"
    assert "MEDSTREAM_DICOM_MAX_BYTES" in too_big.value.reason
    with pytest.raises(InvalidMessage) as no_preamble:
        dicom.parse(raw[128:], max_bytes=len(raw))
    assert no_preamble.value.code == "dicom.no_preamble"


def test_dicom_cut_short_is_rejected() -> None:
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    with pytest.raises(InvalidMessage) as caught:
        dicom.parse(raw[: len(raw) - 1000], 10**8)
    assert caught.value.code == "dicom.truncated"


def test_fhir_validation_errors_name_paths_not_values() -> None:
    bad = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": "Jane Doe 555-1234"},
    }
    with pytest.raises(InvalidMessage) as caught:
        fhir.parse(json.dumps(bad).encode())
    assert caught.value.code == "fhir.invalid_resource"
    assert "valueQuantity.value" in caught.value.reason
    assert "Jane" not in caught.value.reason


def test_all_pydicom_test_files_either_parse_or_fail_cleanly() -> None:
    # The bundled folder on disk: get_testdata_files() would try to download more.
    bundled = Path(pydicom.data.__file__).parent / "test_files"
    small = [p for p in bundled.rglob("*.dcm") if p.stat().st_size < 1_000_000]
    assert len(small) > 40
    for path in small:
        raw = Path(path).read_bytes()
        try:
            dicom.parse(raw, 64 * 1024 * 1024)
        except InvalidMessage as exc:
            assert exc.code.startswith("dicom.")
    assert pydicom.__version__


def test_hl7_escape_and_unescape_round_trip() -> None:
    text = "a|b^c&d~e\\f"
    assert hl7v2.escape(text) == "a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f"
    segment = __import__("hl7").parse(f"MSH|^~\\&|A\rNTE|1||{hl7v2.escape(text)}").segment("NTE")
    assert hl7v2.field(segment, 3, 1, 0) == text


def test_hl7_oxygen_flow_acvpu_and_the_scale_2_target_are_read() -> None:
    """NEWS2's inputs from an HL7 ORU: an SpO2 with an 88-92 reference range (OBX-7)
    is on scale 2, an oxygen flow rate (3151-8) and an ACVPU answer are vitals."""
    text = (
        ORU.decode()
        .replace("59408-5^SpO2^LN||91|%|||", "59408-5^SpO2^LN||89|%|88-92||")
        .replace(
            "OBX|6|CWE|80288-4^Level of consciousness^LN||A^Alert",
            "OBX|6|NM|3151-8^Inhaled oxygen flow rate^LN||2|L/min|||||F|||20260314101500\r"
            "OBX|8|CWE|67775-7^Level of responsiveness^LN||V^Voice",
        )
    )
    vitals, _ = hl7v2.normalise(hl7v2.parse(text.encode()).text, "p")
    by_vital = {v.vital: v for v in vitals.vitals}
    assert by_vital[Vital.SPO2].spo2_scale == 2
    assert by_vital[Vital.SUPPLEMENTAL_OXYGEN].value == 2
    assert by_vital[Vital.CONSCIOUSNESS].text == "V"
    plain, _ = hl7v2.normalise(hl7v2.parse(ORU).text, "p")
    assert {v.vital: v for v in plain.vitals}[Vital.SPO2].spo2_scale is None


def test_fhir_spo2_target_range_88_92_means_scale_2() -> None:
    observation = {
        "resourceType": "Observation",
        "id": "spo2",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "subject": {"reference": "Patient/example"},
        "effectiveDateTime": "2026-03-14T10:15:00Z",
        "valueQuantity": {"value": 89, "unit": "%"},
        "referenceRange": [{"low": {"value": 88}, "high": {"value": 92}}],
    }
    (event,) = fhir.normalise(observation, "p")
    assert event.vitals[0].spo2_scale == 2
    del observation["referenceRange"]
    (event,) = fhir.normalise(observation, "p")
    assert event.vitals[0].spo2_scale is None
