"""The EHR write-back on the real stack, every service a process of its own.

One patient's vital signs (HL7 ORU), a radiology report (FHIR DiagnosticReport) and a
chest film (DICOM), each sent twice, come back on ``ehr.outbound.fhir`` and in
PostgreSQL exactly once: valid FHIR R4 about the real patient, AI-made resources
labelled AIAST, each result with a Provenance. A result from a model that is not in
the registry is dead-lettered. Lineage explains each family's resource, and the audit
trail verifies."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
from fhir.resources.R4B import get_fhir_model_class
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.audit.lineage import trace
from medstream.demo.feed import radiology_report
from medstream.envelope import Envelope, utc_now
from medstream.fhir_r4 import AIAST
from medstream.imaging.phantom import phantom, to_dicom
from medstream.kafka import make_producer
from medstream.models.package import latest
from medstream.platform.retention import prune
from medstream.settings import Settings

from .test_deid_leakage import read_topics
from .test_model_workers import REPORTED, _findings, _send
from .test_monitoring_worker import VITALS, oru

REPORT = "FINDINGS: Moderate right pleural effusion. No pneumothorax.\nIMPRESSION: Effusion."
FAMILIES = {
    "monitoring": "RiskAssessment",
    "imaging": "DiagnosticReport",
    "notes": "DiagnosticReport",
}


def _messages(run: str, mrn: str) -> list[tuple[str, bytes, str, str]]:
    vitals = [
        ("ehr.inbound.hl7v2", oru(mrn, f"wb-{run}-vitals-{i}", *row), mrn, f"wb-{run}-vitals-{i}")
        for i, row in enumerate(VITALS)
    ]
    film = phantom(np.random.default_rng(11), _findings(cardiomegaly=True))
    return [
        *vitals,
        ("ehr.inbound.fhir", radiology_report(mrn, REPORTED, REPORT), mrn, f"wb-{run}-report"),
        ("ehr.inbound.dicom", to_dicom(film.image, patient_id=mrn, seed=5), mrn, f"wb-{run}-film"),
    ]


def _ours(records: list, ids: set[str]) -> list[dict]:  # type: ignore[type-arg]
    found = []
    for record in records:
        if dict(record.headers).get("inbound-message-id", b"").decode() in ids:
            found.append(
                {"key": record.key, "resource": json.loads(record.value), "headers": record.headers}
            )
    return found


def _complete(found: list[dict]) -> bool:  # type: ignore[type-arg]
    provenance = [f for f in found if f["resource"]["resourceType"] == "Provenance"]
    return len(provenance) >= len(VITALS) + 2


async def _wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s * 2)):
        if await predicate():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


async def test_results_are_written_back_once_as_fhir_for_the_real_patient(
    settings: Settings, engine: AsyncEngine, admin_engine: AsyncEngine, pipeline: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    mrn = f"WB{run}"
    messages = _messages(run, mrn)
    ids = {m[3] for m in messages}
    await _send(settings, messages)
    await _send(settings, messages)  # the EHR resends: nothing may be duplicated

    found = _ours(
        await read_topics(
            settings,
            ["ehr.outbound.fhir"],
            until=lambda rs: _complete(_ours(rs, ids)),
            timeout_s=180,
        ),
        ids,
    )
    assert _complete(found), "not every result reached ehr.outbound.fhir"
    resources = [f["resource"] for f in found]
    references = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(references) == len(set(references)), "a resource was published twice"

    for item in found:
        resource = item["resource"]
        assert item["key"] == mrn.encode(), "outbound records are keyed by the EHR patient id"
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        assert "psn-" not in json.dumps(resource)
        if resource["resourceType"] != "Provenance":
            assert resource["subject"]["reference"] == f"Patient/{mrn}"
        ai_made = resource["resourceType"] != "Provenance" and not (
            resource["resourceType"] == "Observation"
            and resource["code"]["coding"][0]["code"] == "news2-total"
        )
        assert (AIAST in resource.get("meta", {}).get("security", [])) == ai_made
        if resource["resourceType"] == "Observation" and not ai_made:
            parts = {c["code"]["coding"][0]["code"] for c in resource["component"]}
            assert {"news2-partial", "news2-red-score", "news2-spo2-scale"} <= parts
        if resource["resourceType"] == "RiskAssessment":
            assert len(resource["prediction"]) == 3, "one prediction per horizon (6, 12, 24 h)"

    types = Counter(r["resourceType"] for r in resources)
    assert types["RiskAssessment"] == len(VITALS)
    assert types["DiagnosticReport"] == 2
    assert types["Provenance"] == len(VITALS) + 2
    package = {name: latest(settings.model_registry, name) for name in FAMILIES}
    for provenance in (r for r in resources if r["resourceType"] == "Provenance"):
        device = provenance["contained"][0]
        model = device["deviceName"][0]["name"].split()[1]
        assert device["identifier"][0]["value"] == package[model].checksum
        assert device["version"][0]["value"] == package[model].version
        assert {e["what"]["identifier"]["value"] for e in provenance["entity"]} <= ids
        for target in provenance["target"]:
            assert target["reference"] in references
    conclusion = next(
        r["conclusion"]
        for r in resources
        if r["resourceType"] == "DiagnosticReport" and "clinical report" in r["code"]["text"]
    )
    assert "Pleural Effusion: present" in conclusion

    # PostgreSQL holds exactly the published resources, once each.
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT id, resource_type, model FROM fhir_resource"
                    " WHERE ehr_patient_reference = :p"
                ),
                {"p": f"Patient/{mrn}"},
            )
        ).all()
    assert sorted(f"{r.resource_type}/{r.id}" for r in rows) == sorted(references)
    assert {r.model for r in rows} == set(FAMILIES)

    # Lineage explains one resource of each family, from inbound message to publication.
    for model, resource_type in FAMILIES.items():
        row = next(r for r in rows if r.model == model and r.resource_type == resource_type)

        async def explained(row_id: str = row.id) -> bool:
            async with engine.connect() as conn:
                return not (await trace(conn, row_id)).missing

        await _wait_for(explained, 120, f"the audit trail of the {model} result")
        async with engine.connect() as conn:
            lineage = await trace(conn, row.id)
        actions = [s.action for s in lineage.steps]
        for step in (
            "message.received",
            "deid.completed",
            "model.inference",
            "vault.relink",
            "result.stored",
            "resource.published",
        ):
            assert step in actions, f"{model}: {step} missing from {actions}"
        assert actions.index("message.received") < actions.index("model.inference")
        assert actions.index("model.inference") < actions.index("resource.published")
        assert lineage.model_checksum == package[model].checksum
        assert mrn not in json.dumps(lineage.as_json()["steps"])

    medstream = str(Path(sys.executable).parent / "medstream")
    risk = next(r for r in rows if r.resource_type == "RiskAssessment")
    shown = subprocess.run(
        [medstream, "lineage", f"RiskAssessment/{risk.id}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "model.inference" in shown.stdout
    assert "vault.relink" in shown.stdout

    # Once `medstream db prune` has deleted its sent outbox row, lineage says so.
    async with admin_engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE outbox SET created_at = created_at - interval '30 days',"
                " sent_at = sent_at - interval '30 days' WHERE message_id = :m"
            ),
            {"m": f"fhir:RiskAssessment/{risk.id}"},
        )
    assert (await prune(admin_engine, 14)).outbox >= 1
    async with engine.connect() as conn:
        pruned = await trace(conn, risk.id)
    assert "resource.published" not in [s.action for s in pruned.steps]
    assert any("no longer known" in m for m in pruned.missing), pruned.missing

    verified = subprocess.run(
        [medstream, "audit", "verify"], capture_output=True, text=True, timeout=300, check=False
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_result_from_an_unregistered_model_is_dead_lettered(
    settings: Settings, pipeline: Path
) -> None:
    event_id = str(uuid.uuid4())
    envelope = Envelope[dict](  # type: ignore[type-var]
        event_id=event_id,
        event_type="medstream.results.monitoring.v1",
        schema_version=1,
        correlation_id=event_id,
        occurred_at=utc_now(),
        patient_pseudonym="psn-unregisteredmodel00",
        payload={
            "patient": "psn-unregisteredmodel00",
            "scored_at": utc_now().isoformat(),
            "risk": 0.5,
            "horizon_hours": 12,
            "news2": 3,
            "news2_risk": "low-medium",
            "news2_complete": True,
            "explanation": {"heart_rate": 1.0},
            "model": "monitoring",
            "model_version": "9.9.9",
            "model_checksum": "0" * 64,
            "inbound_message_ids": [f"rogue-{event_id}"],
        },
    )
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(
            "medstream.results.monitoring",
            value=envelope.model_dump_json().encode(),
            key=b"psn-unregisteredmodel00",
            headers=[("message-id", event_id.encode())],
        )
    finally:
        await producer.stop()

    def rejected(records: list) -> list:  # type: ignore[type-arg]
        return [r for r in records if dict(r.headers).get("message-id") == event_id.encode()]

    dead = rejected(
        await read_topics(
            settings,
            ["medstream.results.monitoring.dlt"],
            until=lambda rs: bool(rejected(rs)),
            timeout_s=120,
        )
    )
    assert dead, "the result of an unregistered model was not dead-lettered"
    headers = dict(dead[0].headers)
    assert headers["error.stage"] == b"results"
    assert headers["error.code"] == b"results.unknown_model"
    assert b"9.9.9" in headers["error.message"]
