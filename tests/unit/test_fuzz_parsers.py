"""Fuzzing: nothing may crash ingestion. Arbitrary bytes and mutated real messages either
ingest or raise InvalidMessage with a stable code, which is what dead-letters them."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from medstream.clinical import SourceFormat
from medstream.deadletter import InvalidMessage
from medstream.deid.engine import DeidEngine
from medstream.deid.keys import Pseudonymiser
from medstream.ingest import ingest

FIXTURES = Path(__file__).parents[1] / "fixtures"
HL7_SAMPLE = (FIXTURES / "oru_r01.hl7").read_bytes()
FHIR_SAMPLE = (FIXTURES / "bundle_r4.json").read_bytes()
DICOM_SAMPLE = Path(get_testdata_file("CT_small.dcm")).read_bytes()
CODE_PREFIX = {SourceFormat.FHIR: "fhir.", SourceFormat.HL7V2: "hl7.", SourceFormat.DICOM: "dicom."}
# Codes any format can give: values no patient can have, and dates deid cannot shift.
SHARED_PREFIXES = ("clinical.", "deid.")


ENGINE = DeidEngine(Pseudonymiser(b"fuzz-key"))


def outcome(source_format: SourceFormat, raw: bytes) -> str:
    """Ingest, then de-identify what was ingested: the whole path a message takes."""
    try:
        result = ingest(source_format, raw, message_id="fuzz", dicom_max_bytes=16 * 1024 * 1024)
    except InvalidMessage as exc:
        assert exc.code.startswith((CODE_PREFIX[source_format], *SHARED_PREFIXES)), exc.code
        return exc.code
    for record in result.records:
        try:
            ENGINE.record(record)
        except InvalidMessage as exc:  # deid dead-letters it too: a clean rejection
            assert exc.code.startswith((CODE_PREFIX[source_format], *SHARED_PREFIXES)), exc.code
            return exc.code
    return "ok"


def mutate(data: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    out = bytearray(data)
    for position, delete, insert in edits:
        at = position % (len(out) + 1)
        out[at : at + delete] = insert
    return bytes(out)


EDITS = st.lists(
    st.tuples(st.integers(0, 10**6), st.integers(0, 8), st.binary(max_size=8)),
    min_size=1,
    max_size=6,
)
# The test command runs a fixed, reproducible 150 examples per target, so CI fails only
# when code changes. MEDSTREAM_FUZZ_EXAMPLES=5000 runs a deep, randomised exploration.
DEEP = os.environ.get("MEDSTREAM_FUZZ_EXAMPLES")
FAST = settings(
    max_examples=int(DEEP or "150"),
    deadline=None,
    derandomize=DEEP is None,
    suppress_health_check=[HealthCheck.too_slow],
)


@FAST
@given(st.binary(max_size=2048), st.sampled_from(list(SourceFormat)))
def test_arbitrary_bytes_never_crash(raw: bytes, source_format: SourceFormat) -> None:
    outcome(source_format, raw)


@FAST
@given(EDITS)
def test_mutated_hl7_never_crashes(edits: list[tuple[int, int, bytes]]) -> None:
    outcome(SourceFormat.HL7V2, mutate(HL7_SAMPLE, edits))


@FAST
@given(EDITS)
def test_mutated_fhir_never_crashes(edits: list[tuple[int, int, bytes]]) -> None:
    outcome(SourceFormat.FHIR, mutate(FHIR_SAMPLE, edits))


@FAST
@given(EDITS)
def test_mutated_dicom_never_crashes(edits: list[tuple[int, int, bytes]]) -> None:
    outcome(SourceFormat.DICOM, mutate(DICOM_SAMPLE, edits))


@FAST
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=30,
    )
)
def test_arbitrary_json_on_the_fhir_topic_never_crashes(value: object) -> None:
    outcome(SourceFormat.FHIR, json.dumps(value).encode())


def test_the_samples_themselves_ingest() -> None:
    assert outcome(SourceFormat.HL7V2, HL7_SAMPLE) == "ok"
    assert outcome(SourceFormat.FHIR, FHIR_SAMPLE) == "ok"
    assert outcome(SourceFormat.DICOM, DICOM_SAMPLE) == "ok"
