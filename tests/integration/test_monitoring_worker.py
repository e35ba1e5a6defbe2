"""HL7 vital signs go through ingestion, deid and the monitoring worker: each patient
gets a risk score with NEWS2 beside it, from the verified model, under a pseudonym."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from medstream.kafka import make_producer
from medstream.models.package import latest
from medstream.settings import Settings

from .test_deid_leakage import read_topics, results_for

VITALS = [  # hour, HR, RR, SpO2, SBP, temperature
    (0, 84, 16, 96, 124, 37.1),
    (4, 98, 19, 95, 114, 37.9),
    (8, 112, 22, 93, 103, 38.6),
    (10, 124, 25, 91, 94, 39.2),
]


def oru(
    mrn: str, control_id: str, hour: int, hr: int, rr: int, spo2: int, sbp: int, temp: float
) -> bytes:
    stamp = f"20260314{hour:02d}0000"
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|HOSP|MS|MS|{stamp}||ORU^R01^ORU_R01|{control_id}|P|2.5.1",
            f"PID|1||{mrn}^^^HOSP^MR||Quillane^Ottoline||19480101|F",
            "OBR|1|||VS^Vital signs",
            f"OBX|1|NM|8867-4^HR^LN||{hr}|/min|||||F|||{stamp}",
            f"OBX|2|NM|9279-1^RR^LN||{rr}|/min|||||F|||{stamp}",
            f"OBX|3|NM|59408-5^SpO2^LN||{spo2}|%|||||F|||{stamp}",
            f"OBX|4|NM|8480-6^SBP^LN||{sbp}|mm[Hg]|||||F|||{stamp}",
            f"OBX|5|NM|8310-5^Temp^LN||{temp}|Cel|||||F|||{stamp}",
            f"OBX|6|CWE|80288-4^LOC^LN||A^Alert||||||F|||{stamp}",
        ]
    ).encode()


async def test_vitals_are_scored_with_news2_under_a_pseudonym(
    settings: Settings, pipeline: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    mrn = f"MRN{run}"
    ids = [f"mon-{run}-{i}" for i in range(len(VITALS))]
    producer = make_producer(settings)
    await producer.start()
    try:
        for message_id, row in zip(ids, VITALS, strict=True):
            await producer.send_and_wait(
                "ehr.inbound.hl7v2",
                value=oru(mrn, message_id, *row),
                key=mrn.encode(),
                headers=[("message-id", message_id.encode())],
            )
    finally:
        await producer.stop()

    def ours(records: list) -> dict[str, dict]:  # type: ignore[type-arg]
        return results_for(records, ids)

    results = ours(
        await read_topics(
            settings, ["medstream.results.monitoring"], until=lambda rs: len(ours(rs)) == len(ids)
        )
    )
    assert set(results) == set(ids)
    package = latest(settings.model_registry, "monitoring")
    first, last = results[ids[0]], results[ids[-1]]
    for result in results.values():
        assert result["patient"].startswith("psn-")
        assert mrn not in json.dumps(result)
        assert result["model_checksum"] == package.checksum
        assert 0.0 <= result["risk"] <= 1.0
        assert abs(sum(abs(w) for w in result["explanation"].values()) - 1) < 1e-3
    assert first["news2"] == 0
    # RR 25 (3), SpO2 91 (3), SBP 94 (2), HR 124 (2), 39.2 (2): NEWS2 12, high risk.
    assert last["news2"] == 12
    assert last["news2_risk"] == "high"
    assert last["risk"] > first["risk"]
