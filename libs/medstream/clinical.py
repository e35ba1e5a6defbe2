"""Normalised clinical events: what ingestion makes of FHIR, HL7 v2 and DICOM.

The same models are produced before and after de-identification by the same
normalisers (``medstream.formats``). Before deid, ``patient`` is the EHR's patient id;
after it, ``patient`` is the pseudonym and every date has been shifted, so a model
worker never sees the real values.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class SourceFormat(StrEnum):
    """The inbound formats of the CONTRACT."""

    FHIR = "fhir"
    HL7V2 = "hl7v2"
    DICOM = "dicom"


class Kind(StrEnum):
    """What a normalised event is about; each kind has its own de-identified topic."""

    PATIENT = "patient"
    VITALS = "vitals"
    DOCUMENT = "document"
    IMAGING = "imaging"


class Vital(StrEnum):
    """The vital signs NEWS2 and the monitoring model use."""

    HEART_RATE = "heart_rate"
    RESPIRATORY_RATE = "respiratory_rate"
    SPO2 = "spo2"
    SYSTOLIC_BP = "systolic_bp"
    DIASTOLIC_BP = "diastolic_bp"
    TEMPERATURE = "temperature"
    CONSCIOUSNESS = "consciousness"
    SUPPLEMENTAL_OXYGEN = "supplemental_oxygen"


# LOINC codes of the CONTRACT, and the unit each is normalised to.
VITAL_LOINC: dict[str, Vital] = {
    "8867-4": Vital.HEART_RATE,
    "9279-1": Vital.RESPIRATORY_RATE,
    "59408-5": Vital.SPO2,
    "2708-6": Vital.SPO2,
    "8480-6": Vital.SYSTOLIC_BP,
    "8462-4": Vital.DIASTOLIC_BP,
    "8310-5": Vital.TEMPERATURE,
    "80288-4": Vital.CONSCIOUSNESS,
    "67775-7": Vital.CONSCIOUSNESS,
    "3150-0": Vital.SUPPLEMENTAL_OXYGEN,  # inhaled oxygen concentration
    "3151-8": Vital.SUPPLEMENTAL_OXYGEN,  # inhaled oxygen flow rate
}


def scale_2_range(low: float | None, high: float | None) -> bool:
    """Whether an SpO2 reference (target) range is the hypercapnic one, 88-92%: NEWS2
    then scores SpO2 on scale 2."""
    return low is not None and high is not None and 86 <= low <= 89 and 90 <= high <= 93


# Panels carry their vital signs as components: blood pressure panels (systolic and
# diastolic), and the LOINC vital signs panel 85353-1 (one charted set).
VITAL_PANELS = frozenset({"85354-9", "55284-4", "35094-2", "85353-1"})


# The window of dates MedStream accepts anywhere in a message. Outside it a date is a
# data-entry or interface error (year 1, year 9999), and date shifting could overflow.
DATE_MIN = date(1850, 1, 1)
DATE_MAX = date(2200, 12, 31)

# Physiologically possible values, in the unit each vital is normalised to: the
# outlier thresholds of the MIMIC-III benchmark (Harutyunyan et al., Scientific Data
# 6:96, 2019, resources/variable_ranges.csv), beyond which a value is removed there as
# impossible rather than clipped. SpO2 and FiO2 are bounded by their definitions. They
# catch garbage (a heart rate of -5 or 1e308), not abnormal physiology: NEWS2 scores that.
PLAUSIBLE_RANGE: dict[str, tuple[float, float, str]] = {
    "heart_rate": (0, 390, "/min"),
    "respiratory_rate": (0, 330, "/min"),
    "spo2": (0, 100, "%"),
    "systolic_bp": (0, 375, "mm[Hg]"),
    "diastolic_bp": (0, 375, "mm[Hg]"),
    "temperature": (14.2, 47, "Cel"),
    "supplemental_oxygen": (0, 100, "% or L/min"),
}
FAHRENHEIT_UNITS = frozenset({"[degf]", "degf", "f", "°f"})


def in_date_window(value: date | datetime) -> bool:
    """Whether ``value`` lies within DATE_MIN..DATE_MAX."""
    day = value.date() if isinstance(value, datetime) else value
    return DATE_MIN <= day <= DATE_MAX


class _Clinical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatientEvent(_Clinical):
    """Who the patient is: demographics. After deid only generalised values remain."""

    patient: str
    birth_date: date | None = None
    age_years: int | None = Field(
        default=None, description="Age at the event; 90 means 90 or older."
    )
    sex: str | None = None
    postal_code: str | None = Field(default=None, description="After deid: the 3-digit ZIP.")
    deceased: bool | None = None


class VitalSign(_Clinical):
    """One vital-sign measurement."""

    vital: Vital
    loinc: str
    value: float | None = None
    text: str | None = Field(default=None, description="For coded values, e.g. ACVPU.")
    unit: str | None = None
    observed_at: datetime
    spo2_scale: int | None = Field(
        default=None,
        description="2 where a clinician set a target SpO2 of 88-92% (NEWS2 SpO2 scale 2), "
        "from the SpO2 reference range.",
    )

    def implausibility(self) -> str | None:
        """Why this value cannot be a real measurement, if it cannot (never the value
        itself: the sentence goes into dead-letter headers)."""
        if self.value is None:
            return None
        name = self.vital.value.replace("_", " ")
        if not math.isfinite(self.value):
            return f"A {name} value is not a finite number."
        bounds = PLAUSIBLE_RANGE.get(self.vital.value)
        if bounds is None:
            return None
        value = self.value
        if self.vital is Vital.TEMPERATURE and (self.unit or "").lower() in FAHRENHEIT_UNITS:
            value = (value - 32) * 5 / 9
        low, high, unit = bounds
        if not low <= value <= high:
            return (
                f"A {name} value is outside the physiologically possible range "
                f"{low:g} to {high:g} {unit}."
            )
        return None


class VitalsEvent(_Clinical):
    """One or more vital signs charted together for one patient."""

    patient: str
    vitals: list[VitalSign]


class DocumentEvent(_Clinical):
    """A clinical note or report in plain text."""

    patient: str
    document_kind: str = Field(description="note | radiology_report | report")
    title: str | None = None
    text: str
    authored_at: datetime | None = None


class ImagingEvent(_Clinical):
    """One DICOM instance: its identity, and the Part 10 bytes (base64)."""

    patient: str
    sop_instance_uid: str
    study_instance_uid: str | None = None
    modality: str | None = None
    rows: int | None = None
    columns: int | None = None
    dicom_base64: str


ClinicalPayload = PatientEvent | VitalsEvent | DocumentEvent | ImagingEvent

PAYLOAD_OF_KIND: dict[Kind, type[_Clinical]] = {
    Kind.PATIENT: PatientEvent,
    Kind.VITALS: VitalsEvent,
    Kind.DOCUMENT: DocumentEvent,
    Kind.IMAGING: ImagingEvent,
}


class IdentifiedRecord(_Clinical):
    """One validated unit of inbound data, still carrying PHI (restricted topics only).

    ``source`` is the unit in its own format: one FHIR resource as JSON, one HL7 v2
    message as ER7 text, or one DICOM file as base64. De-identification applies the
    format's policy table to it, so the CLI and the service share one engine.
    """

    format: SourceFormat
    ehr_patient_id: str
    kinds: list[Kind]
    source: str
    source_system: str | None = None
    inbound_message_id: str


class MonitoringResult(_Clinical):
    """A deterioration score for one patient, with NEWS2 beside it and its explanation."""

    patient: str = Field(description="The patient pseudonym.")
    scored_at: datetime = Field(description="The last observation time (date-shifted).")
    risk: float = Field(ge=0, le=1)
    horizon_hours: int
    risk_by_horizon: dict[str, float] = Field(
        default_factory=dict, description="Risk of deterioration within 6, 12 and 24 hours."
    )
    news2: int = Field(description="NEWS2 on the latest complete picture.")
    news2_risk: str
    news2_complete: bool
    news2_partial: bool = Field(
        default=False, description="Some parameter had no value within its staleness limit."
    )
    news2_missing: list[str] = Field(
        default_factory=list, description="Parameters with no value: scored 0."
    )
    news2_stale_minutes: dict[str, float] = Field(
        default_factory=dict,
        description="Each parameter's age in minutes at the scoring time (0: charted in the "
        "last row; more: carried forward).",
    )
    news2_red_score: bool = Field(
        default=False, description="A single parameter scored 3 (the RCP's red score)."
    )
    news2_spo2_scale: int = 1
    news2_parts: dict[str, int] = Field(default_factory=dict)
    explanation: dict[str, float] = Field(description="Per-vital attribution; |weights| sum to 1.")
    explanation_notes: dict[str, str] = Field(
        default_factory=dict,
        description="For vitals that drove the risk: carried forward (and how old) or missing.",
    )
    model: str
    model_version: str
    model_checksum: str
    inbound_message_ids: list[str]


class NoteSpan(BaseModel):
    """A word of a report and its signed attribution (largest |weight| = 1). ``start`` and
    ``end`` index the de-identified text; ``text`` lets a reader outside MedStream see
    the word."""

    start: int
    end: int
    weight: float
    text: str | None = Field(
        default=None, description="The word itself, from the de-identified text."
    )


class NoteLabel(BaseModel):
    """One CheXpert observation's status in a report, the calibrated probability that
    it is present (whatever the status), and each status's probability."""

    status: str = Field(description="present | absent | uncertain | not_mentioned")
    probability: float = Field(
        ge=0, le=1, description="The calibrated probability that the observation is present."
    )
    scores: dict[str, float] | None = Field(
        default=None,
        description="Each status's probability (present, absent, uncertain, not_mentioned), "
        "summing to 1.",
    )


class NotesResult(_Clinical):
    """The 14 CheXpert labels of one de-identified report, with word attributions."""

    patient: str = Field(description="The patient pseudonym.")
    document_kind: str
    labels: dict[str, NoteLabel]
    explanation: list[NoteSpan] = Field(description="Character spans in the de-identified text.")
    model: str
    model_version: str
    model_checksum: str
    inbound_message_ids: list[str]


class ImagingResult(_Clinical):
    """CheXpert probabilities for one de-identified film, with a Grad-CAM heatmap."""

    patient: str = Field(description="The patient pseudonym.")
    sop_instance_uid: str = Field(description="The de-identified SOP Instance UID.")
    study_instance_uid: str | None = None
    labels: dict[str, float] = Field(description="Probability per observation the model covers.")
    explained: str = Field(description="The observation the heatmap explains.")
    heatmap_png_base64: str = Field(description="Grad-CAM over the preprocessed film, PNG.")
    model: str
    model_version: str
    model_checksum: str
    inbound_message_ids: list[str]
