"""DICOM de-identification applies PS3.15's Basic Profile in full: a value planted in
every attribute Table E.1-1 removes or replaces, and in overlays, curves, private tags
and attributes outside the allow-list, is gone afterwards. Burned-in text is refused."""

from __future__ import annotations

import base64
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from medstream.deid.dicom_profile import DicomProfile
from medstream.deid.engine import DeidEngine
from medstream.deid.keys import Pseudonymiser
from medstream.deid.policy import load_policy
from medstream.imaging.phantom import to_dicom

ROOT = Path(__file__).parents[2]
ENGINE = DeidEngine(Pseudonymiser(b"profile-test-key"))
PROFILE = load_policy().dicom
# Values planted as text: each unique, none a real word.
PLANT = "Qzv{0}plant"
TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "AE", "CS"}


def patient_with_a_shift() -> str:
    """A patient key whose date offset is not zero, so a shifted date always changes."""
    return next(f"p{i}" for i in range(100) if ENGINE.keys.date_offset(f"p{i}") != 0)


def vr_of(tag: int) -> str | None:
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return vr.split(" or ")[0]


def planted_value(index: int, vr: str) -> object:
    if vr in TEXT_VRS:
        text = PLANT.format(index)
        return text.upper()[:16] if vr in {"CS", "AE"} else text
    if vr == "DA":
        return f"2011{1 + index % 12:02d}{1 + index % 27:02d}"
    if vr == "DT":
        return f"2011{1 + index % 12:02d}{1 + index % 27:02d}101500"
    if vr == "TM":
        return "101500"
    if vr == "UI":
        return f"1.2.826.0.1.3680043.99.{index}"
    if vr == "SQ":
        item = Dataset()
        item.PatientName = PLANT.format(f"{index}sq")
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.98.{index}"
        return Sequence([item])
    if vr in {"IS", "DS"}:
        return str(index)
    if vr in {"US", "UL", "SS", "SL"}:
        return index
    if vr in {"FL", "FD"}:
        return float(index)
    if vr in {"OB", "OW", "UN"}:
        return PLANT.format(index).encode()
    return None


def film() -> Dataset:
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    return pydicom.dcmread(BytesIO(to_dicom(image, patient_id="PLANT-PID", seed=1)))


def test_the_table_is_the_standards_own() -> None:
    """dicom_e11.csv is generated from the 2026c edition, never typed by hand."""
    script = ROOT / "infra/scripts/dicom_policy.py"
    done = subprocess.run([sys.executable, str(script), "--check"], check=False)
    assert done.returncode == 0, "dicom_e11.csv differs from PS3.15 2026c: regenerate it"
    assert len(PROFILE.basic) > 600


def test_a_value_planted_in_every_table_attribute_does_not_survive() -> None:
    ds = film()
    planted: dict[int, object] = {}
    for index, tag in enumerate(sorted(PROFILE.basic)):
        vr = vr_of(tag)
        if tag >> 16 in (0x0000, 0x0002) or vr is None:
            continue  # command and file meta groups never occur in a stored data set body
        if PROFILE.ours.get(tag) == "K":
            continue  # kept on purpose: the Retain Patient Characteristics Option (sex, size…)
        value = planted_value(index, vr)
        if value is None:
            continue
        ds.add_new(tag, vr, value)
        planted[tag] = value
    # Overlays with a bitmap and a label, a curve, private tags, and public attributes
    # that neither table names.
    ds.add_new(0x60000010, "US", 32)
    ds.add_new(0x60000011, "US", 32)
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", PLANT.format("overlaydesc"))
    ds.add_new(0x60001500, "LO", PLANT.format("overlaylabel"))
    ds.add_new(0x60003000, "OW", PLANT.format("overlaybitmap").encode() * 8)
    ds.add_new(0x50000005, "US", 2)
    ds.add_new(0x50003000, "OW", PLANT.format("curve").encode())
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", PLANT.format("private"))
    ds.add_new(0x00291010, "OB", PLANT.format("privateob").encode())
    ds.add_new(0x00181016, "LO", PLANT.format("notlisted"))  # SecondaryCaptureDeviceManufacturer
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)

    patient = patient_with_a_shift()
    result = ENGINE.dicom(out.getvalue(), patient)
    clean_bytes = base64.b64decode(result.source)
    clean = pydicom.dcmread(BytesIO(clean_bytes))

    assert b"Qzv" not in clean_bytes.replace(b"QZV", b"Qzv"), "a planted value survived"
    assert b"QZV" not in clean_bytes
    assert not any(e.tag.group & 0xFF00 in (0x5000, 0x6000) for e in clean)
    assert not any(e.tag.is_private for e in clean)
    assert Tag(0x00181016) not in clean
    for tag, value in planted.items():
        action = PROFILE.action(Tag(tag), vr_of(tag) or "")
        after = clean.get(tag)
        if action == "X":
            assert after is None, f"{Tag(tag)} should be removed"
        elif action == "Z":
            assert after is not None
            assert not after.value, f"{Tag(tag)} should be empty"
        elif action in {"U", "S", "P", "B", "A"}:
            assert after is None or after.value != value, f"{Tag(tag)} kept its value"
        elif action == "K":
            # Only what the options keep on purpose: times (whole-day shifts) and the
            # Retain Patient Characteristics attributes.
            assert vr_of(tag) == "TM" or tag in PROFILE.ours, f"{Tag(tag)} kept"
    assert clean.PatientIdentityRemoved == "YES"
    assert clean.PatientID == ENGINE.keys.patient(patient)
    assert clean.PixelData == ds.PixelData


def test_source_application_titles_leave_the_file_meta() -> None:
    ds = film()
    ds.file_meta.SourceApplicationEntityTitle = "PLANTAE"
    out = BytesIO()
    ds.save_as(out, enforce_file_format=True)
    clean = base64.b64decode(ENGINE.dicom(out.getvalue(), "p1").source)
    assert b"PLANTAE" not in clean


def test_a_reviewed_private_attribute_can_be_kept_by_the_list() -> None:
    profile = DicomProfile.from_rows(
        [], [], [{"creator": "ACME PRIVATE", "group": "0009", "element": "01"}], []
    )
    ds = Dataset()
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "safe")
    ds.add_new(0x00091002, "LO", "not listed")
    kept = []
    profile.walk(ds, lambda owner, element, action: kept.append((element.tag, action)))
    assert (Tag(0x00091001), "K") in kept
    assert (Tag(0x00091002), "X") in kept


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"BurnedInAnnotation": "YES"}, "BurnedInAnnotation is YES"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.7"}, "secondary capture"),
        ({"SOPClassUID": "1.2.840.10008.5.1.4.1.1.6.1", "Modality": "US"}, "ultrasound"),
        ({"Modality": "US"}, "modality"),
        ({"Modality": "XC"}, "modality"),
        ({"ImageType": ["DERIVED", "SECONDARY", "SCREEN SAVE"]}, "screen save"),
    ],
)
def test_instances_known_to_carry_burned_in_text_are_caught(
    changes: dict[str, object], reason: str
) -> None:
    ds = film()
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    found = PROFILE.burned_in_reason(ds)
    assert found is not None
    assert reason in found


def test_an_overlay_hidden_in_the_pixels_high_bits_is_caught() -> None:
    ds = film()
    ds.add_new(0x60000102, "US", 12)  # OverlayBitPosition: the overlay lives in bit 12
    assert PROFILE.burned_in_reason(ds) == (
        "an overlay is stored in the pixel data's unused high bits"
    )


def test_a_plain_chest_film_passes() -> None:
    ds = film()
    ds.BurnedInAnnotation = "NO"
    assert PROFILE.burned_in_reason(ds) is None
