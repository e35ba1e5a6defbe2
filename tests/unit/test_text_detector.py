"""The free-text detector finds each Safe Harbor category, and leaves clinical text alone."""

from __future__ import annotations

import pytest

from medstream.deid.keys import Pseudonymiser
from medstream.deid.replace import PatientScope, ReplacementMode, TextScrubber, shift_date_text
from medstream.deid.text import PhiType, TextDetector

DETECTOR = TextDetector()

CASES = [
    ("Seen by Dr. Alice Wong today.", "Alice Wong", PhiType.NAME),
    ("Signed: Robert Chen, MD", "Robert Chen", PhiType.NAME),
    ("SMITHSON, John was admitted.", "SMITHSON, John", PhiType.NAME),
    ("Grace Hopper visited her son.", "Grace Hopper", PhiType.NAME),
    ("Patient: Ngozi Okafor", "Ngozi Okafor", PhiType.NAME),
    ("Admitted 03/12/2026 for sepsis.", "03/12/2026", PhiType.DATE),
    ("Follow-up on March 3rd, 2026.", "March 3rd, 2026", PhiType.DATE),
    ("Surgery 2025-11-02T08:30:00Z.", "2025-11-02T08:30:00Z", PhiType.DATE),
    ("Seen 5 Jan 2026 in clinic.", "5 Jan 2026", PhiType.DATE),
    ("Last admission Jan 2025.", "Jan 2025", PhiType.DATE),
    ("Foley removed on 1/6.", "1/6", PhiType.DATE),
    ("A 94-year-old woman.", "94", PhiType.AGE),
    ("Call 617-555-0199 ext. 22 today.", "617-555-0199 ext. 22", PhiType.PHONE),
    ("Fax: (617) 555-0100.", "(617) 555-0100", PhiType.FAX),
    ("Email j.doe@example.org for results.", "j.doe@example.org", PhiType.EMAIL),
    ("SSN 078-05-1120 on file.", "078-05-1120", PhiType.SSN),
    ("MRN: 00482915.", "00482915", PhiType.MRN),
    ("Medical record number 7734221A.", "7734221A", PhiType.MRN),
    ("Insurance member ID XJH44821.", "XJH44821", PhiType.ID),
    ("Driver's license number D1234567.", "D1234567", PhiType.ID),
    ("Pacemaker serial number PM-88123-Z.", "PM-88123-Z", PhiType.ID),
    ("Account #: 88219934.", "88219934", PhiType.ID),
    ("Lives at 42 Quillfeather Lane, Apt 3.", "42 Quillfeather Lane, Apt 3", PhiType.ADDRESS),
    ("Moved to Springfield last year.", "Springfield", PhiType.LOCATION),
    ("Boston, MA 02115", "02115", PhiType.ZIP),
    ("See https://portal.example.com/pt/991.", "https://portal.example.com/pt/991", PhiType.URL),
    ("Logged in from 192.168.10.24.", "192.168.10.24", PhiType.IP),
    (
        "Transferred from Massachusetts General Hospital.",
        "Massachusetts General Hospital",
        PhiType.ORGANIZATION,
    ),
    ("Seen at St. Mary's Medical Center.", "St. Mary's Medical Center", PhiType.ORGANIZATION),
]


@pytest.mark.parametrize(("text", "phi", "phi_type"), CASES)
def test_each_safe_harbor_category_is_found(text: str, phi: str, phi_type: PhiType) -> None:
    spans = DETECTOR.detect(text)
    start = text.index(phi)
    covering = [s for s in spans if s.start <= start and s.end >= start + len(phi)]
    assert covering, f"{phi!r} not covered in {[(text[s.start : s.end], s.type) for s in spans]}"
    assert covering[0].type is phi_type


@pytest.mark.parametrize(
    "text",
    [
        "No pleural effusion. Heart rate 88 bpm, BP 120/80 mmHg, SpO2 97% on room air.",
        "IMPRESSION: Mild cardiomegaly. Cannot exclude early consolidation in the right base.",
        "Foley catheter in place. Glasgow coma scale 15. Parkinson disease, stable.",
        "Started ceftriaxone 1 g IV daily and azithromycin 500 mg.",
        "A 45-year-old man with chest pain for 2 days.",
        "The patient will follow up with cardiology in 2 weeks.",
    ],
)
def test_clinical_text_without_phi_is_left_alone(text: str) -> None:
    assert [text[s.start : s.end] for s in DETECTOR.detect(text)] == []


def test_ages_up_to_89_are_not_phi() -> None:
    assert not DETECTOR.detect("An 89-year-old man.")
    assert DETECTOR.detect("A 90-year-old man.")


def test_known_values_from_structured_fields_are_found_in_text() -> None:
    spans = DETECTOR.detect("Zxqvian was seen.", known=[("Zxqvian", PhiType.NAME)])
    assert [(s.start, s.end, s.type) for s in spans] == [(0, 7, PhiType.NAME)]


def test_dates_in_text_shift_by_the_patient_offset_in_either_mode() -> None:
    keys = Pseudonymiser(b"k")
    for mode in ReplacementMode:
        text, spans = TextScrubber(keys, mode).scrub("Seen 03/12/2026.", PatientScope("p", 10))
        assert text == "Seen 03/22/2026."
        assert spans[0].replacement == "03/22/2026"


def test_surrogates_are_consistent_per_patient_and_differ_between_patients() -> None:
    scrubber = TextScrubber(Pseudonymiser(b"k"), ReplacementMode.SURROGATE)
    note = "Dr. Alice Wong called 617-555-0199."
    first, _ = scrubber.scrub(note, PatientScope("p1", 3))
    again, _ = scrubber.scrub(note, PatientScope("p1", 3))
    other, _ = scrubber.scrub(note, PatientScope("p2", 3))
    assert first == again
    assert first != other
    assert "Alice" not in first
    assert "555-0199" not in first
    assert first.startswith("Dr. ")
    assert first.count("-") == 2


def test_tag_mode_writes_types() -> None:
    text, _ = TextScrubber(Pseudonymiser(b"k")).scrub("Email a@b.org", PatientScope("p", 1))
    assert text == "Email [EMAIL]"


@pytest.mark.parametrize(
    ("value", "days", "expected"),
    [
        ("2026-01-04", 30, "2026-02-03"),
        ("03/12/1931", -400, "02/05/1930"),
        ("Jan 5th, 2026", 30, "Feb 4th, 2026"),
        ("5 Jan 2026", 30, "4 Feb 2026"),
        ("the 5th of January", 30, "the 4th of February"),
        ("20260104", 30, "20260203"),
        ("JAN 5, 2026", 30, "FEB 4, 2026"),
    ],
)
def test_date_shifting_keeps_the_written_style(value: str, days: int, expected: str) -> None:
    assert shift_date_text(value, days) == expected
