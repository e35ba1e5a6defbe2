"""The policy tables applied to FHIR, HL7 v2 and real DICOM files."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path

import hl7
import pydicom
import pytest
from pydicom.data import get_testdata_file

from medstream.clinical import IdentifiedRecord, Kind, SourceFormat
from medstream.deid.engine import DeidEngine
from medstream.deid.keys import Pseudonymiser
from medstream.deid.policy import generalise_zip, load_policy
from medstream.formats import fhir

FIXTURES = Path(__file__).parents[1] / "fixtures"
ENGINE = DeidEngine(Pseudonymiser(b"unit-test-key", max_shift_days=365))
RESOURCES = {
    u.resource.get("id"): u.resource
    for u in fhir.split(fhir.parse((FIXTURES / "bundle_r4.json").read_bytes()))
}


def test_policy_tables_use_only_known_actions() -> None:
    policy = load_policy()
    fhir_actions = {a for rules in policy.fhir.values() for a in rules.values()}
    assert fhir_actions <= {
        "keep",
        "remove",
        "pseudonymise",
        "pseudonymise_patient",
        "pseudonymise_reference",
        "date_shift",
        "generalise_birthdate",
        "generalise_zip",
        "free_text",
        "free_text_base64",
    }
    hl7_actions = {a.split(":")[0] for rules in policy.hl7v2.values() for a in rules.values()}
    assert hl7_actions <= {
        "keep",
        "remove",
        "constant",
        "date_shift",
        "generalise_birthdate",
        "pseudonymise",
        "pseudonymise_patient_identifiers",
        "generalise_address",
        "observation_value",
        "free_text",
    }
    assert set(policy.dicom.ours.values()) <= {"X", "Z", "U", "S", "P", "A", "B", "K"}
    assert set(policy.dicom.basic.values()) <= {
        "D",
        "Z",
        "X",
        "U",
        "Z/D",
        "X/Z",
        "X/D",
        "X/Z/D",
        "X/Z/U*",
    }
    assert policy.version


def test_zip_generalisation_and_restricted_prefixes() -> None:
    restricted = load_policy().restricted_zip3
    assert generalise_zip("02115", restricted) == "021"
    assert generalise_zip("03601-1234", restricted) == "000"  # 036 is restricted
    assert generalise_zip("82301", restricted) == "000"
    assert generalise_zip("12", restricted) == "000"


def test_pseudonyms_are_keyed_and_consistent() -> None:
    keys = Pseudonymiser(b"k1")
    assert keys.patient("123") == keys.patient(" 123 ")
    assert keys.patient("123") != keys.patient("124")
    assert keys.patient("123") != Pseudonymiser(b"k2").patient("123")
    offsets = {keys.date_offset(str(i)) for i in range(2000)}
    assert 0 not in offsets
    assert min(offsets) >= -365
    assert max(offsets) <= 365
    assert min(offsets) < -300
    assert max(offsets) > 300


def test_fhir_patient_keeps_only_what_safe_harbor_allows() -> None:
    out = ENGINE.fhir(RESOURCES["example"], "example")
    clean = json.loads(out.source)
    assert clean["id"] == ENGINE.keys.patient("example")
    assert "name" not in clean
    assert "telecom" not in clean
    assert clean["address"] == [{"state": "MA", "postalCode": "021"}]
    born_1931 = datetime.now(UTC).year - 1931 > 89
    assert clean["birthDate"] == (
        str(datetime.now(UTC).year - 90) if born_1931 else clean["birthDate"]
    )
    assert clean["identifier"][0]["value"] != "00482915"
    assert out.identity.ehr_patient_id == "example"
    assert {
        "system": "urn:oid:1.2.36.146.595.217.0.1",
        "value": "00482915",
    } in out.identity.identifiers


def test_one_patient_s_dates_move_together_and_keep_their_intervals() -> None:
    a = dict(RESOURCES["heart-rate"], effectiveDateTime="2026-03-10T08:00:00Z")
    b = dict(RESOURCES["heart-rate"], effectiveDateTime="2026-03-13T20:30:00Z")
    shifted = [json.loads(ENGINE.fhir(r, "example").source)["effectiveDateTime"] for r in (a, b)]
    first, second = (datetime.fromisoformat(s.replace("Z", "+00:00")) for s in shifted)
    assert second - first == datetime(2026, 3, 13, 20, 30) - datetime(2026, 3, 10, 8)
    offset = ENGINE.keys.date_offset("example")
    assert first.date() == date(2026, 3, 10) + __import__("datetime").timedelta(days=offset)


def test_fhir_free_text_is_scrubbed_and_references_pseudonymised() -> None:
    out = ENGINE.fhir(RESOURCES["note-1"], "example")
    clean = json.loads(out.source)
    text = base64.b64decode(clean["content"][0]["attachment"]["data"]).decode()
    for phi in ("Smithson", "00482915", "Alice Wong", "555-0100", "03/10/2026"):
        assert phi not in text
    assert "pneumonia" in text
    assert clean["subject"]["reference"] == f"Patient/{ENGINE.keys.patient('example')}"
    (event,) = out.payloads
    assert event.patient == ENGINE.keys.patient("example")


def test_hl7_deid_drops_identifiers_and_scrubs_text() -> None:
    out = ENGINE.hl7v2((FIXTURES / "oru_r01.hl7").read_text(), "00482915")
    message = hl7.parse(out.source)
    assert "Smithson" not in out.source
    assert "078-05-1120" not in out.source
    assert "(617)555-1234" not in out.source
    assert "Maria" not in out.source
    assert str(message.segment("PID")[3]).startswith(ENGINE.keys.patient("00482915"))
    assert str(message.segment("PID")[11]) == "^^^MA^021^USA"
    assert "Wong" not in out.source  # attending doctor (PV1-7) emptied, and in text
    assert "Effusion \\T\\ basilar atelectasis" in out.source  # escapes written back
    vitals = next(p for p in out.payloads if type(p).__name__ == "VitalsEvent")
    assert len(vitals.vitals) == 6


def test_hl7_unknown_and_next_of_kin_segments_are_dropped() -> None:
    text = (FIXTURES / "oru_r01.hl7").read_text() + "NK1|1|Smithson^Maria|DAU\nZPI|custom|John\n"
    out = ENGINE.hl7v2(text, "00482915")
    assert "NK1" not in out.source
    assert "ZPI" not in out.source


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"])
def test_dicom_basic_profile_on_real_files(name: str) -> None:
    raw = Path(get_testdata_file(name)).read_bytes()
    before = pydicom.dcmread(BytesIO(raw))
    out = ENGINE.dicom(raw, str(before.PatientID))
    after = pydicom.dcmread(BytesIO(base64.b64decode(out.source)))
    profile = load_policy().dicom
    for element in before:
        tag, action = element.tag, profile.action(element.tag, element.VR)
        if action == "X":
            assert tag not in after, element.keyword
        elif action == "Z":
            assert not after[tag].value, element.keyword
        elif action == "U":
            assert after[tag].value != element.value, element.keyword
        elif action == "P":
            assert str(after[tag].value) == ENGINE.keys.patient(str(before.PatientID))
        elif action == "S" and element.value:
            assert after[tag].value != element.value, element.keyword
        elif action == "K":
            assert after[tag].value == element.value, element.keyword
    assert not any(tag.is_private for tag in after)
    assert after.PatientIdentityRemoved == "YES"
    codes = {item.CodeValue for item in after.DeidentificationMethodCodeSequence}
    assert codes == {"113100", "113107", "113108"}
    assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
    assert after.PixelData == before.PixelData  # pixels untouched


def test_dicom_uids_are_replaced_consistently_across_files() -> None:
    raw = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    first = pydicom.dcmread(BytesIO(base64.b64decode(ENGINE.dicom(raw, "p").source)))
    second = pydicom.dcmread(BytesIO(base64.b64decode(ENGINE.dicom(raw, "p").source)))
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.StudyInstanceUID.startswith("2.25.")
    assert len(first.StudyInstanceUID) <= 64


def test_a_dry_run_without_free_text_is_the_real_run() -> None:
    full = (FIXTURES / "oru_r01.hl7").read_text()
    vitals_only = "\n".join(
        line for line in full.splitlines() if not line.startswith(("OBX|7|", "NTE|"))
    )

    def record(source: str) -> IdentifiedRecord:
        return IdentifiedRecord(
            format=SourceFormat.HL7V2,
            ehr_patient_id="00482915",
            kinds=[Kind.VITALS],
            source=source,
            inbound_message_id="m1",
        )

    offset = ENGINE.keys.date_offset("00482915")
    dry = ENGINE.dry_run(record(vitals_only))
    assert dry.texts == []
    assert dry.output is not None
    assert dry.output_at(offset) == ENGINE.record(record(vitals_only), offset)
    assert dry.output_at(offset + 1) is None  # the vault holds another offset: run again
    with_text = ENGINE.dry_run(record(full))
    assert with_text.texts
    assert with_text.output is None  # it must be tagged for real
    assert ENGINE.texts_of(record(full)) == with_text.texts
