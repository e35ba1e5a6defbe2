"""The gateways' pure parts: MLLP framing and ACKs, STOW-RS bodies and responses, FHIR
search parsing, and SMART Backend Services tokens. The listeners themselves are tested
on the real stack with real clients (tests/e2e/test_gateways.py)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import hl7
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from medstream.errors import InvalidMessage
from medstream.ops.gateways import stow
from medstream.ops.gateways.edge import KafkaUnavailable
from medstream.ops.gateways.fhir_search import (
    SearchError,
    capability_statement,
    parse_search,
    patient_reference,
    searchset,
)
from medstream.ops.gateways.mllp import (
    END_BLOCK,
    START_BLOCK,
    MessageHeader,
    acknowledgement,
    frame,
    replies,
    unframe,
)
from medstream.ops.gateways.smart import (
    ASSERTION_TYPE,
    AuthError,
    TokenIssuer,
    register_client,
    scope_allows,
)
from medstream.settings import Settings

pytestmark = pytest.mark.unit

ORU = (
    "MSH|^~\\&|LAB|GENERAL HOSP|EHR|HOSP|20261130101500||ORU^R01^ORU_R01|CTRL-42|P|2.5.1\r"
    "PID|1||MRN123^^^HOSP^MR||DOE^JANE\r"
)


# ---------------------------------------------------------------- MLLP


def test_a_frame_round_trips_and_whitespace_between_frames_is_tolerated() -> None:
    framed = frame(ORU.encode())
    assert framed.startswith(START_BLOCK)
    assert framed.endswith(END_BLOCK)
    assert unframe(b"\r\n" + framed[: -len(END_BLOCK)]) == ORU.encode()


def test_bytes_without_a_start_block_are_refused_with_a_stable_code() -> None:
    with pytest.raises(InvalidMessage) as refused:
        unframe(ORU.encode())
    assert refused.value.code == "mllp.no_start_block"


def test_an_aa_echoes_msh_10_and_answers_the_sender() -> None:
    header = MessageHeader.of(ORU.encode())
    ack = hl7.parse(acknowledgement(header, "AA").decode())
    assert str(ack.segment("MSA")(1)) == "AA"
    assert str(ack.segment("MSA")(2)) == "CTRL-42"
    msh = ack.segment("MSH")
    assert str(msh(5)) == "LAB"  # to the sender
    assert str(msh(3)) == "EHR"  # from the application it addressed
    assert str(msh(9)) == "ACK^R01^ACK"
    assert str(msh(12)) == "2.5.1"


def test_an_ar_names_the_stable_code_in_err() -> None:
    header = MessageHeader.of(ORU.encode())
    error = InvalidMessage("hl7.no_patient", "The message has no PID-3 patient identifier.")
    ack = hl7.parse(acknowledgement(header, "AR", error).decode())
    assert str(ack.segment("MSA")(1)) == "AR"
    err = ack.segment("ERR")
    assert str(err(3)(1)(1)) == "101"
    assert str(err(5)(1)(1)) == "hl7.no_patient"


def test_an_ae_when_kafka_is_unavailable() -> None:
    ack = acknowledgement(MessageHeader.of(ORU.encode()), "AE", KafkaUnavailable())
    parsed = hl7.parse(ack.decode())
    assert str(parsed.segment("MSA")(1)) == "AE"
    assert "gateway.kafka_unavailable" in ack.decode()


def test_enhanced_mode_uses_commit_codes_and_msh_15() -> None:
    enhanced = ORU.replace("|P|2.5.1", "|P|2.5.1|||AL")
    header = MessageHeader.of(enhanced.encode())
    assert header.accept_ack_type == "AL"
    assert "MSA|CA|CTRL-42" in acknowledgement(header, "AA").decode()
    errors_only = MessageHeader.of(ORU.replace("|P|2.5.1", "|P|2.5.1|||ER").encode())
    assert not replies(errors_only, accepted=True)
    assert replies(errors_only, accepted=False)
    assert replies(MessageHeader.of(ORU.encode()), accepted=True)


def test_a_header_that_cannot_be_read_still_gets_an_ack() -> None:
    header = MessageHeader.of(b"\x00garbage")
    ack = hl7.parse(acknowledgement(header, "AR", InvalidMessage("x.y", "bad")).decode())
    assert str(ack.segment("MSA")(2)) == ""


# ---------------------------------------------------------------- STOW-RS


def related(parts: list[bytes], boundary: str = "b0und") -> tuple[str, bytes]:
    body = b"".join(
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n"
        for p in parts
    )
    body += f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


def test_stow_parts_are_split_byte_for_byte() -> None:
    binary = bytes(range(256)) * 3 + b"\r\n--not-the-boundary\r\n"
    content_type, body = related([binary, b"second"])
    assert stow.dicom_parts(content_type, body) == [binary, b"second"]


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        'multipart/related; type="application/dicom"',
        'multipart/related; type="image/png"; boundary=x',
    ],
)
def test_anything_but_a_dicom_related_body_is_refused(content_type: str) -> None:
    with pytest.raises(stow.NotStowBody):
        stow.dicom_parts(content_type, b"--x\r\n\r\nabc\r\n--x--")


def test_the_store_response_lists_failures_with_their_reasons() -> None:
    ok = stow.StoredInstance("1.2.840.10008.5.1.4.1.1.1", "1.2.3")
    bad = stow.StoredInstance(None, None, stow.CANNOT_UNDERSTAND, "dicom.no_preamble")
    assert stow.store_response([ok])[0] == 200
    status, body = stow.store_response([ok, bad])
    assert status == 202
    failed = body["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00000902"]["Value"] == ["dicom.no_preamble"]
    assert body["00081199"]["Value"][0]["00081155"]["Value"] == ["1.2.3"]
    assert stow.store_response([bad])[0] == 409


# ---------------------------------------------------------------- FHIR search


def test_patient_references_are_normalised() -> None:
    assert patient_reference("123") == "Patient/123"
    assert patient_reference("Patient/123") == "Patient/123"
    assert patient_reference("http://ehr/fhir/Patient/123") == "Patient/123"


def test_a_search_must_name_the_patient_and_only_supported_parameters() -> None:
    with pytest.raises(SearchError, match="patient"):
        parse_search("Observation", [("code", "1234-5")])
    with pytest.raises(SearchError, match="supported"):
        parse_search("Observation", [("subject", "Patient/1"), ("status", "final")])
    with pytest.raises(SearchError, match="supported"):
        parse_search("Provenance", [("patient", "1"), ("code", "x")])
    with pytest.raises(SearchError, match="_count"):
        parse_search("Observation", [("subject", "1"), ("_count", "0")])


def test_a_search_becomes_parameterised_sql() -> None:
    found = parse_search(
        "Observation",
        [
            ("subject", "Patient/1"),
            ("_lastUpdated", "ge2026-11-01"),
            ("_lastUpdated", "lt2026-12-01T00:00:00Z"),
            ("code", "http://loinc.org|1234-5,abc"),
            ("_count", "5"),
            ("_offset", "10"),
        ],
    )
    page, total = found.sql()
    values = found.parameters()
    assert "Patient/1" not in page  # values are bound, never spliced
    assert values["limit"] == 5
    assert values["offset"] == 10
    codes = next(v for k, v in values.items() if k.startswith("codes"))
    assert json.loads(codes[0]) == {
        "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}
    }
    assert json.loads(codes[1]) == {"code": {"coding": [{"code": "abc"}]}}
    assert "count(*)" in total


def test_the_searchset_pages_with_next_and_previous_links() -> None:
    from datetime import UTC, datetime  # noqa: PLC0415

    found = parse_search("RiskAssessment", [("subject", "1"), ("_count", "2"), ("_offset", "2")])
    now = datetime.now(UTC)
    bundle = searchset(
        found, "http://gw/fhir", [("a", {"resourceType": "RiskAssessment", "id": "a"}, now)], 5
    )
    relations = {link["relation"]: link["url"] for link in bundle["link"]}
    assert "_offset=4" in relations["next"]
    assert "_offset=0" in relations["previous"]
    assert bundle["total"] == 5
    assert bundle["entry"][0]["resource"]["meta"]["lastUpdated"].endswith("Z")


def test_the_capability_statement_declares_what_is_implemented() -> None:
    statement = capability_statement("http://gw/fhir", "http://gw/auth/token")
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert set(by_type) == {"DiagnosticReport", "Observation", "RiskAssessment", "Provenance"}
    assert {p["name"] for p in by_type["Provenance"]["searchParam"]} == {
        "subject", "patient", "_lastUpdated"
    }  # fmt: skip
    assert "code" in {p["name"] for p in by_type["Observation"]["searchParam"]}


# ---------------------------------------------------------------- SMART tokens


@pytest.fixture
def issuer_settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path, gateway_token_key="k" * 48)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _assertion(key: object, client: str, audience: str, algorithm: str, **claims: object) -> str:
    now = int(time.time())
    body = {
        "iss": client,
        "sub": client,
        "aud": audience,
        "exp": now + 240,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({**body, **claims}, key, algorithm=algorithm)  # type: ignore[arg-type]


def _form(assertion: str, scope: str) -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": scope,
    }


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_a_registered_client_gets_a_token_with_only_its_allowed_scopes(
    issuer_settings: Settings, algorithm: str
) -> None:
    key = (
        rsa.generate_private_key(65537, 2048)
        if algorithm == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    register_client(issuer_settings, "lab-reader", _pem(key), ["system/*.read"])
    issuer = TokenIssuer(issuer_settings)
    assertion = _assertion(key, "lab-reader", issuer.token_endpoint, algorithm)
    answer = issuer.issue(_form(assertion, "system/*.read system/*.write"))
    assert answer["scope"] == "system/*.read"
    grant = issuer.verify(f"Bearer {answer['access_token']}", "system/Observation.read")
    assert grant.client_id == "lab-reader"
    with pytest.raises(AuthError) as forbidden:
        issuer.verify(f"Bearer {answer['access_token']}", "system/Bundle.write")
    assert forbidden.value.status == 403
    with pytest.raises(AuthError) as replayed:
        issuer.issue(_form(assertion, "system/*.read"))
    assert replayed.value.status == 401


def test_assertions_that_must_be_refused(issuer_settings: Settings) -> None:
    key = rsa.generate_private_key(65537, 2048)
    other = rsa.generate_private_key(65537, 2048)
    register_client(issuer_settings, "c1", _pem(key), ["system/*.read"])
    issuer = TokenIssuer(issuer_settings)
    audience = issuer.token_endpoint
    cases = {
        "unregistered": _assertion(key, "nobody", audience, "RS384"),
        "wrong key": _assertion(other, "c1", audience, "RS384"),
        "wrong audience": _assertion(key, "c1", "http://elsewhere/token", "RS384"),
        "expired": _assertion(key, "c1", audience, "RS384", exp=int(time.time()) - 120),
        "too long-lived": _assertion(key, "c1", audience, "RS384", exp=int(time.time()) + 3600),
        "symmetric": jwt.encode(
            {"iss": "c1", "sub": "c1", "aud": audience, "exp": int(time.time()) + 60, "jti": "x"},
            "s" * 32,
            algorithm="HS256",
        ),
    }
    for name, assertion in cases.items():
        with pytest.raises(AuthError) as refused:
            issuer.issue(_form(assertion, "system/*.read"))
        assert refused.value.status in (400, 401), name


def test_reads_without_a_valid_token_are_401(issuer_settings: Settings) -> None:
    issuer = TokenIssuer(issuer_settings)
    for header in (None, "", "Basic abc", "Bearer not-a-jwt"):
        with pytest.raises(AuthError) as refused:
            issuer.verify(header, "system/Observation.read")
        assert refused.value.status == 401
    forged = jwt.encode(
        {"sub": "x", "scope": "system/*.read", "exp": int(time.time()) + 60},
        "other-key-" * 4,
        algorithm="HS256",
    )
    with pytest.raises(AuthError):
        issuer.verify(f"Bearer {forged}", "system/Observation.read")


def test_scope_matching_follows_smart_v1_and_v2() -> None:
    assert scope_allows("system/*.read", "system/Observation.read")
    assert scope_allows("system/Observation.rs", "system/Observation.read")
    assert scope_allows("system/*.*", "system/Bundle.write")
    assert not scope_allows("system/Observation.read", "system/RiskAssessment.read")
    assert not scope_allows("patient/*.read", "system/Observation.read")
    assert not scope_allows("system/*.read", "system/Bundle.write")


@pytest.mark.parametrize(
    "params",
    [
        [("_count", "²")],
        [("_offset", "99999999999999999999")],
        [("_lastUpdated", "9999-12-31")],
        [("_lastUpdated", "gt9999-12-31T23:59:59.999999Z")],
        [("_lastUpdated", "not-a-date")],
    ],
)
def test_hostile_search_values_are_400s_not_500s(params: list[tuple[str, str]]) -> None:
    with pytest.raises(SearchError):
        parse_search("Observation", [("subject", "1"), *params])


def test_last_updated_covers_its_precision() -> None:
    minute = parse_search("Observation", [("subject", "1"), ("_lastUpdated", "2026-11-30T10:15Z")])
    values = minute.parameters()
    start = next(v for k, v in values.items() if k.startswith("start"))
    end = next(v for k, v in values.items() if k.startswith("end"))
    assert (end - start).total_seconds() == 60
    second = parse_search(
        "Observation", [("subject", "1"), ("_lastUpdated", "2026-11-30T10:15:07+01:00")]
    )
    values = second.parameters()
    start = next(v for k, v in values.items() if k.startswith("start"))
    end = next(v for k, v in values.items() if k.startswith("end"))
    assert (end - start).total_seconds() == 1


def test_search_only_or_read_only_scopes_do_not_cover_reads_and_searches() -> None:
    assert not scope_allows("system/Observation.s", "system/Observation.read")
    assert not scope_allows("system/Observation.r", "system/Observation.read")
