"""Chest films and radiology reports go through ingestion, deid and the imaging and
notes workers as real processes: each gets CheXpert labels with an explanation, under
a pseudonym, from the verified model; a film that is not a grayscale radiograph is
dead-lettered with its reason; and the workers report ready on their metrics."""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO

from medstream.demo.feed import radiology_report
from medstream.imaging.phantom import LABELS, phantom, to_dicom
from medstream.kafka import make_producer
from medstream.models.package import latest
from medstream.settings import Settings

from .conftest import METRICS_PORTS
from .test_deid_leakage import read_topics, results_for


def _findings(**present: bool) -> dict[str, bool]:
    labels = {name: present.get(name.replace(" ", "_").lower(), False) for name in LABELS[1:]}
    return {"No Finding": not any(labels.values()), **labels}


async def _send(settings: Settings, messages: list[tuple[str, bytes, str, str]]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        for topic, value, key, message_id in messages:
            await producer.send_and_wait(
                topic, value=value, key=key.encode(), headers=[("message-id", message_id.encode())]
            )
    finally:
        await producer.stop()


async def test_chest_films_are_labelled_with_heatmaps(settings: Settings, pipeline: Path) -> None:
    run = uuid.uuid4().hex[:8]
    rng = np.random.default_rng(7)
    films = {
        f"img-{run}-normal": phantom(rng, _findings()),
        f"img-{run}-heart": phantom(rng, _findings(cardiomegaly=True)),
        f"img-{run}-fluid": phantom(rng, _findings(pleural_effusion=True)),
    }
    patient_id = f"PAT{run}"
    messages = [
        ("ehr.inbound.dicom", to_dicom(p.image, patient_id=patient_id, seed=i), patient_id, mid)
        for i, (mid, p) in enumerate(films.items())
    ]
    colour = pydicom.dcmread(get_testdata_file("SC_rgb.dcm"))
    # A radiograph that claims to be one, in colour (and no screen capture, which
    # ingestion would refuse as likely to carry burned-in text).
    colour.Modality = "DX"
    colour.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    colour.file_meta.MediaStorageSOPClassUID = colour.SOPClassUID
    colour.BurnedInAnnotation = "NO"
    buffer = DicomBytesIO()
    colour.save_as(buffer)
    colour_id = f"img-{run}-colour"
    messages.append(("ehr.inbound.dicom", buffer.getvalue(), patient_id, colour_id))
    await _send(settings, messages)
    ids = list(films)
    results = results_for(
        await read_topics(
            settings, ["medstream.results.imaging"], until=lambda rs: len(results_for(rs, ids)) == 3
        ),
        ids,
    )
    assert set(results) == set(ids)
    package = latest(settings.model_registry, "imaging")
    for result in results.values():
        assert result["patient"].startswith("psn-")
        assert patient_id not in json.dumps(result)
        assert set(result["labels"]) == set(LABELS)
        assert result["model_checksum"] == package.checksum
        png = base64.b64decode(result["heatmap_png_base64"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    normal, heart, fluid = (results[i]["labels"] for i in ids)
    assert heart["Cardiomegaly"] > 0.5 > normal["Cardiomegaly"]
    assert fluid["Pleural Effusion"] > 0.5 > normal["Pleural Effusion"]
    assert results[ids[1]]["explained"] == "Cardiomegaly"

    def dead(records: list) -> list:  # type: ignore[type-arg]
        return [
            r for r in records if dict(r.headers).get("inbound-message-id") == colour_id.encode()
        ]

    dead_letters = dead(
        await read_topics(
            settings, ["medstream.deid.imaging.dlt"], until=lambda rs: len(dead(rs)) >= 1
        )
    )
    assert dead_letters, "the colour image was not dead-lettered by the imaging worker"
    headers = dict(dead_letters[0].headers)
    assert headers["error.stage"] == b"imaging"
    assert headers["error.code"] == b"imaging.not_grayscale"
    assert headers["original.topic"] == b"medstream.deid.imaging"


REPORTED = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
REPORTS = {
    "effusion": "FINDINGS: Small left pleural effusion. No pneumothorax.\nIMPRESSION: Small "
    "left pleural effusion.",
    "hedged": "Patient Ottoline Quillane. Right basilar opacity; pneumonia cannot be excluded. "
    "Heart size is normal.",
}


async def test_reports_are_labelled_with_word_attributions(
    settings: Settings, pipeline: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    patient_id = f"PAT{run}"
    messages = []
    for name, text in REPORTS.items():
        report = radiology_report(patient_id, REPORTED, text)
        messages.append(("ehr.inbound.fhir", report, patient_id, f"note-{run}-{name}"))
    await _send(settings, messages)
    ids = [m[3] for m in messages]
    results = results_for(
        await read_topics(
            settings, ["medstream.results.notes"], until=lambda rs: len(results_for(rs, ids)) == 2
        ),
        ids,
    )
    assert set(results) == set(ids)
    effusion, hedged = (results[i] for i in ids)
    assert effusion["labels"]["Pleural Effusion"]["status"] == "present"
    assert effusion["labels"]["Pneumothorax"]["status"] == "absent"
    assert hedged["labels"]["Pneumonia"]["status"] == "uncertain"
    assert hedged["labels"]["Cardiomegaly"]["status"] == "absent"
    # probability is P(present), whatever the status; scores give every status
    pneumonia = hedged["labels"]["Pneumonia"]
    assert pneumonia["probability"] == pneumonia["scores"]["present"]
    assert sum(pneumonia["scores"].values()) == pytest.approx(1, abs=1e-3)
    assert effusion["labels"]["Pneumothorax"]["probability"] < pneumonia["probability"]
    for result in results.values():
        assert result["patient"].startswith("psn-")
        assert "Quillane" not in json.dumps(result)
        assert patient_id not in json.dumps(result)
        assert result["explanation"]
        assert max(abs(s["weight"]) for s in result["explanation"]) == 1


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310  (local metrics)
        return str(response.read().decode())


def _not_applicable_ct(port: int) -> float:
    for line in _get(f"http://127.0.0.1:{port}/metrics").splitlines():
        if line.startswith('medstream_imaging_not_applicable_total{modality="CT"}'):
            return float(line.split()[-1])
    return 0.0


async def test_a_ct_slice_is_counted_not_scored_nor_dead_lettered(
    settings: Settings, pipeline: Path
) -> None:
    """CT is valid DICOM the chest-film model does not read: no result, no dead letter,
    one more in the worker's not-applicable counter."""
    port = METRICS_PORTS["medstream-imaging"]
    before = 0.0
    for _ in range(120):  # the worker may still be starting
        try:
            before = await asyncio.to_thread(_not_applicable_ct, port)
            break
        except OSError:
            await asyncio.sleep(0.5)
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    ct.SOPInstanceUID = f"1.2.826.0.1.3680043.10.{uuid.uuid4().int % 10**12}"
    ct.file_meta.MediaStorageSOPInstanceUID = ct.SOPInstanceUID
    buffer = DicomBytesIO()
    ct.save_as(buffer)
    message_id = f"ct-{uuid.uuid4().hex[:8]}"
    await _send(settings, [("ehr.inbound.dicom", buffer.getvalue(), "PATCT", message_id)])
    after = before
    for _ in range(120):
        after = await asyncio.to_thread(_not_applicable_ct, port)
        if after > before:
            break
        await asyncio.sleep(0.5)
    assert after == before + 1
    results = await read_topics(
        settings,
        ["medstream.results.imaging", "medstream.deid.imaging.dlt"],
        until=lambda rs: False,
        timeout_s=3,
    )
    assert not [r for r in results if message_id.encode() in b"".join(v for _, v in r.headers)]
    assert not results_for(
        [r for r in results if r.topic == "medstream.results.imaging"], [message_id]
    )


async def test_workers_report_ready_on_their_metrics(settings: Settings, pipeline: Path) -> None:
    """Each worker serves Prometheus metrics; readiness is 1 once its model is warm."""
    ports = {name.removeprefix("medstream-"): port for name, port in METRICS_PORTS.items()}
    for worker, port in ports.items():
        body = ""
        for _ in range(120):
            try:
                body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
                if f'medstream_worker_ready{{worker="{worker}"}} 1.0' in body:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.5)
        assert f'medstream_worker_ready{{worker="{worker}"}} 1.0' in body, worker
        for series in (
            "medstream_worker_queue_seconds",
            "medstream_worker_batch_size",
            "medstream_worker_inference_seconds",
            "medstream_worker_throughput_per_second",
        ):
            assert series in body
