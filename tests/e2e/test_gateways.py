"""The gateways, driven by clients no one here wrote: python-hl7's ``mllp_send``,
dcmtk's ``echoscu`` and ``storescu``, pynetdicom's ``storescu``, and ``fhirpy``. Every
message they send must reach its one outcome (the ledger), Kafka being stopped must
never be answered with success, and a gateway SIGKILLed mid-stream must lose nothing
(its senders resend)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pydicom
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fhirpy import AsyncFHIRClient
from pydicom.data import get_testdata_file
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream import stack as local_stack
from medstream.clinical import SourceFormat
from medstream.demo.feed import Feed, FeedMessage, hospital_feed
from medstream.demo.ledger import outcomes
from medstream.demo.run import check, wait_for_outcomes
from medstream.demo.via_gateways import (
    http_call,
    rekeyed,
    request_token,
    send_via_gateways,
)
from medstream.ingest import DERIVE_ID
from medstream.ops.gateways.smart import register_client
from medstream.received import message_id_for
from medstream.settings import Settings
from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR, EHR_INBOUND_HL7V2

from .conftest import FAULT_ENV, ledger_check, start_services

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
CR_CHEST = "RG1_UNCI.dcm"  # pydicom-data: a real CR chest film, explicit VR little endian
# A short Kafka wait, so a stopped broker is answered (AE, A700, 503) in seconds.
GATEWAY_ENV = {**FAULT_ENV, "MEDSTREAM_GATEWAY_ACK_TIMEOUT_S": "3"}


@pytest.fixture(scope="module")
def gateway_stack(settings: Settings) -> Iterator[local_stack.Stack]:
    stack = local_stack.Stack(settings.state_dir)
    local_stack.down_services(stack, print)
    start_services(stack, GATEWAY_ENV)
    _wait_for_port(settings.http_port)
    yield stack
    local_stack.down_services(stack, print)


def _wait_for_port(port: int, timeout_s: float = 60) -> None:
    import socket  # noqa: PLC0415

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on {port}")


def _feed(patients: int = 2, hours: int = 2) -> Feed:
    return rekeyed(
        hospital_feed(
            patients=patients,
            hours=hours,
            malformed=0,
            seed=7,
            run=f"gw{uuid.uuid4().hex[:6]}",
        )
    )


def _only(feed: Feed, topic: str) -> Feed:
    return Feed([m for m in feed.messages if m.topic == topic], feed.patients)


def _mllp_send(settings: Settings, path: Path) -> list[str]:
    """python-hl7's mllp_send over a file of messages: the MSA-1 of each reply."""
    done = subprocess.run(
        [
            str(BIN / "mllp_send"),
            "--loose",
            "-p",
            str(settings.mllp_port),
            "-f",
            str(path),
            "127.0.0.1",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()[-500:]
    return [
        line.split("|")[1]
        for line in done.stdout.decode().replace("\r", "\n").splitlines()
        if line.startswith("MSA|")
    ]


def _pynetdicom_store(settings: Settings, path: Path) -> subprocess.CompletedProcess[bytes]:
    """pynetdicom's storescu app, verbose (it prints each response's status)."""
    return subprocess.run(
        [
            sys.executable, "-m", "pynetdicom", "storescu", "127.0.0.1",
            str(settings.dicom_port), str(path), "-aet", "STORESCU", "-aec", "MEDSTREAM", "-v",
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip


def _hl7_file(tmp_path: Path, messages: list[bytes]) -> Path:
    path = tmp_path / "messages.hl7"
    path.write_bytes(b"\n".join(m.replace(b"\r", b"\n") for m in messages))
    return path


async def _settle(engine: AsyncEngine, feed: Feed, timeout_s: float = 240) -> None:
    found = await wait_for_outcomes(engine, feed, timeout_s=timeout_s, advance=lambda n: None)
    problems = check(feed, found)
    assert not problems, problems[:5]


# ---------------------------------------------------------------- MLLP


async def test_mllp_send_gets_aa_for_each_message_and_ar_with_its_code(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine, tmp_path: Path
) -> None:
    feed = _only(_feed(), EHR_INBOUND_HL7V2.name)
    bad = (
        b"MSH|^~\\&|LAB|HOSP|MEDSTREAM|MS|20261130||ORU^R01|BAD-"
        + uuid.uuid4().hex[:8].encode()
        + b"|P|9.9\rPID|1||X1\r"
    )
    codes = _mllp_send(settings, _hl7_file(tmp_path, [m.value for m in feed.messages] + [bad]))
    assert codes == ["AA"] * len(feed.messages) + ["AR"]
    await _settle(engine, feed)
    # The refusal names its code, and was dead-lettered and audited at the gateway.
    bad_id = message_id_for(bad, (), DERIVE_ID[SourceFormat.HL7V2])
    async with engine.connect() as conn:
        found = await outcomes(conn, [bad_id])
    assert found[bad_id].rejected == [("gateway", "hl7.unsupported_version")]


async def test_a_frame_without_its_start_block_is_refused(
    settings: Settings, gateway_stack: local_stack.Stack
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", settings.mllp_port)
    writer.write(b"MSH|^~\\&|A|B|C|D|20261130||ADT^A01|NOFRAME|P|2.5\r\x1c\r")
    await writer.drain()
    reply = await asyncio.wait_for(reader.readuntil(b"\x1c\r"), 30)
    writer.close()
    assert b"MSA|AR|NOFRAME" in reply
    assert b"mllp.no_start_block" in reply


# ---------------------------------------------------------------- DICOM


def test_echoscu_verifies_and_an_unknown_ae_title_is_rejected_and_audited(
    settings: Settings, gateway_stack: local_stack.Stack
) -> None:
    port = str(settings.dicom_port)
    ok = subprocess.run(
        ["echoscu", "-aet", "ECHOSCU", "-aec", "MEDSTREAM", "127.0.0.1", port],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr.decode()
    refused = subprocess.run(
        ["echoscu", "-aet", "INTRUDER", "-aec", "MEDSTREAM", "127.0.0.1", port],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0
    assert b"Calling AE Title Not Recognized" in refused.stdout + refused.stderr
    audited = subprocess.run(
        [
            str(BIN / "medstream"),
            "audit",
            "query",
            "--actor",
            "gateway",
            "--action",
            "gateway.connection_refused",
            "--json",
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"AE INTRUDER" in audited.stdout


async def test_storescu_from_dcmtk_and_pynetdicom_store_real_films(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine, tmp_path: Path
) -> None:
    assert shutil.which("storescu"), "dcmtk is installed by the test command"
    films = []
    for n, name in enumerate((CR_CHEST, "CT_small.dcm")):
        dataset = pydicom.dcmread(get_testdata_file(name))
        dataset.SOPInstanceUID = pydicom.uid.generate_uid()  # a new instance each run
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.PatientID = f"GWPAT{n}{uuid.uuid4().hex[:6]}"
        path = tmp_path / name
        dataset.save_as(path, enforce_file_format=True)
        films.append(path)
    dcmtk = subprocess.run(
        [
            "storescu",
            "-aet",
            "STORESCU",
            "-aec",
            "MEDSTREAM",
            "127.0.0.1",
            str(settings.dicom_port),
            str(films[0]),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert dcmtk.returncode == 0, dcmtk.stderr.decode()[-500:]
    pynet = _pynetdicom_store(settings, films[1])
    assert pynet.returncode == 0, (pynet.stdout + pynet.stderr).decode()[-500:]
    assert b"Status: 0x0000" in pynet.stdout + pynet.stderr
    messages = [
        FeedMessage(
            EHR_INBOUND_DICOM.name,
            path.read_bytes(),
            None,
            message_id_for(path.read_bytes(), (), DERIVE_ID[SourceFormat.DICOM]),
            family="imaging",
            kind="radiograph",
        )
        for path in films
    ]
    await _settle(engine, Feed(messages, []))


# ---------------------------------------------------------------- Kafka stopped


@asynccontextmanager
async def kafka_stopped(stack: local_stack.Stack) -> AsyncIterator[None]:
    """The broker frozen (SIGSTOP): it answers nothing, as a stopped one would, and
    comes back with its data (SIGCONT)."""
    pid = local_stack.kafka_node_pid(stack, stack.kafka_nodes[0].node_id)
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_with_kafka_stopped_nothing_is_acknowledged_and_the_retry_completes(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine, tmp_path: Path
) -> None:
    feed = _feed(patients=1, hours=1)
    hl7 = [m for m in feed.messages if m.topic == EHR_INBOUND_HL7V2.name][:1]
    film = next(m for m in feed.messages if m.topic == EHR_INBOUND_DICOM.name)
    path = tmp_path / "film.dcm"
    path.write_bytes(film.value)
    async with kafka_stopped(gateway_stack):
        codes = await asyncio.to_thread(
            _mllp_send, settings, _hl7_file(tmp_path, [m.value for m in hl7])
        )
        stored = await asyncio.to_thread(_pynetdicom_store, settings, path)
    assert codes == ["AE"], "a message was acknowledged while Kafka was stopped"
    assert b"0xA700" in stored.stdout + stored.stderr
    # The senders' retries, once Kafka is back.
    deadline = time.monotonic() + 120
    while (
        codes := await asyncio.to_thread(
            _mllp_send, settings, _hl7_file(tmp_path, [m.value for m in hl7])
        )
    ) != ["AA"]:
        assert time.monotonic() < deadline, codes
        await asyncio.sleep(2)
    stored = await asyncio.to_thread(_pynetdicom_store, settings, path)
    assert stored.returncode == 0
    await _settle(engine, Feed([*hl7, film], feed.patients))


# ---------------------------------------------------------------- HTTP


def _client(settings: Settings, scopes: list[str], asked: str) -> str:
    key = ec.generate_private_key(ec.SECP384R1())
    name = f"test-{uuid.uuid4().hex[:8]}"
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    register_client(settings, name, public.decode(), scopes)
    return request_token(settings, name, key, "ES384", asked)


def _transaction(observation: bytes) -> dict[str, object]:
    resource = json.loads(observation)
    return {
        "resourceType": "Bundle",
        "id": f"tx-{uuid.uuid4().hex}",
        "type": "transaction",
        "entry": [{"resource": resource, "request": {"method": "POST", "url": "Observation"}}],
    }


async def test_fhirpy_posts_bundles_and_pages_through_the_results(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine
) -> None:
    feed = _feed(patients=1, hours=3)
    vitals = [
        m for m in feed.messages if m.topic == EHR_INBOUND_FHIR.name and m.family == "monitoring"
    ][:3]
    if len(vitals) < 3:  # the patient charts on HL7: take its FHIR twin's feed instead
        feed = _feed(patients=2, hours=3)
        vitals = [
            m
            for m in feed.messages
            if m.topic == EHR_INBOUND_FHIR.name and m.family == "monitoring"
        ][:3]
    assert len(vitals) == 3
    token = await asyncio.to_thread(
        _client, settings, ["system/*.read", "system/*.write"], "system/*.read system/*.write"
    )
    base = f"http://127.0.0.1:{settings.http_port}/fhir"
    client = AsyncFHIRClient(base, authorization=f"Bearer {token}")
    posted = []
    for message in vitals:
        bundle = _transaction(message.value)
        answer = await client.execute("", method="post", data=bundle)
        assert answer["type"] == "transaction-response"
        assert answer["entry"][0]["response"]["status"] == "202 Accepted"
        ident = message_id_for(json.dumps(bundle).encode(), (), DERIVE_ID[SourceFormat.FHIR])
        posted.append(replace(message, message_id=ident))
    await _settle(engine, Feed(posted, feed.patients))
    patient = vitals[0].key
    assert isinstance(patient, str)
    pages = client.resources("RiskAssessment").search(subject=f"Patient/{patient}").limit(1)
    found = await pages.fetch_all()
    assert len(found) == 3, "paging through next links returns every result once"
    assert len({r["id"] for r in found}) == 3
    first = (
        await client.resources("RiskAssessment")
        .search(subject=f"Patient/{patient}")
        .limit(1)
        .fetch_raw()
    )
    assert first["total"] == 3
    assert any(link["relation"] == "next" for link in first["link"])
    one = await client.reference("RiskAssessment", found[0]["id"]).to_resource()
    assert one["id"] == found[0]["id"]
    coding = one["code"]["coding"][0]
    same_code = client.resources("RiskAssessment").search(
        subject=f"Patient/{patient}", code=f"{coding['system']}|{coding['code']}"
    )
    assert len(await same_code.fetch_all()) == 3
    since = one["meta"]["lastUpdated"][:10]
    assert (
        len(
            await client.resources("RiskAssessment")
            .search(subject=f"Patient/{patient}", _lastUpdated__ge=since)
            .fetch_all()
        )
        == 3
    )
    assert (
        not await client.resources("RiskAssessment")
        .search(subject=f"Patient/{patient}", _lastUpdated__lt=since)
        .fetch_all()
    )
    # Lineage starts at the network edge: the gateway's acceptance is its first step.
    lineage = subprocess.run(
        [str(BIN / "medstream"), "lineage", f"RiskAssessment/{one['id']}"],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert b"gateway.accepted" in lineage.stdout
    statement = await client.execute("metadata", method="get")
    assert statement["resourceType"] == "CapabilityStatement"


def test_reads_need_a_token_with_the_read_scope(
    settings: Settings, gateway_stack: local_stack.Stack
) -> None:
    path = "/fhir/RiskAssessment?subject=Patient/X"
    assert http_call(settings, "GET", path)[0] == 401
    assert http_call(settings, "GET", path, token="not-a-token")[0] == 401
    writer = _client(settings, ["system/*.write"], "system/*.write")
    status, body = http_call(settings, "GET", path, token=writer)
    assert status == 403
    assert json.loads(body)["resourceType"] == "OperationOutcome"
    reader = _client(settings, ["system/*.read"], "system/*.read")
    assert http_call(settings, "GET", path, token=reader)[0] == 200
    assert http_call(settings, "POST", "/fhir/Observation", b"{}", token=reader)[0] == 403


async def test_stow_rs_stores_real_films_and_lists_the_failed_one(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine
) -> None:
    film = pydicom.dcmread(get_testdata_file(CR_CHEST))
    film.SOPInstanceUID = pydicom.uid.generate_uid()
    film.file_meta.MediaStorageSOPInstanceUID = film.SOPInstanceUID
    film.PatientID = f"STOW{uuid.uuid4().hex[:8]}"
    from io import BytesIO  # noqa: PLC0415

    buffer = BytesIO()
    film.save_as(buffer, enforce_file_format=True)
    good = buffer.getvalue()
    broken = b"\x00" * 200 + b"not dicom"
    boundary = uuid.uuid4().hex
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + part + b"\r\n"
            for part in (good, broken)
        )
        + f"--{boundary}--\r\n".encode()
    )
    token = await asyncio.to_thread(_client, settings, ["system/*.write"], "system/*.write")
    status, answer = await asyncio.to_thread(
        http_call, settings, "POST", "/studies", body,
        f'multipart/related; type="application/dicom"; boundary={boundary}', token,
    )  # fmt: skip
    assert status == 202, answer
    response = json.loads(answer)
    assert response["00081199"]["Value"][0]["00081155"]["Value"] == [film.SOPInstanceUID]
    failed = response["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0xC000]
    assert failed["00000902"]["Value"] == ["dicom.no_preamble"]
    ident = message_id_for(good, (), DERIVE_ID[SourceFormat.DICOM])
    await _settle(
        engine, Feed([FeedMessage(EHR_INBOUND_DICOM.name, good, None, ident, family="imaging")], [])
    )


# ---------------------------------------------------------------- the demo, and a kill


async def test_the_demo_feed_through_the_gateways_with_the_gateway_killed(
    settings: Settings, gateway_stack: local_stack.Stack, engine: AsyncEngine
) -> None:
    """The demo feed over MLLP, DICOM and HTTP, malformed messages included; the gateway
    is SIGKILLed twice while it flows. The senders resend what was not acknowledged,
    and the ledger adds up: one outcome per message, nothing lost or duplicated."""
    from .conftest import Run  # noqa: PLC0415

    feed = rekeyed(
        hospital_feed(patients=4, hours=6, malformed=12, seed=11, run=f"gk{uuid.uuid4().hex[:6]}")
    )
    started_ms = int(time.time() * 1000) - 1000
    sending = asyncio.create_task(send_via_gateways(settings, feed.messages, lambda n: None))
    folder = gateway_stack.state_dir / "services"
    for wait_s in (0.5, 1.5):
        await asyncio.sleep(wait_s)
        old = int((folder / "gateway.pid").read_text())
        os.kill(old, signal.SIGKILL)
        for _ in range(120):
            await asyncio.sleep(0.25)
            try:
                if int((folder / "gateway.pid").read_text()) != old:
                    break
            except (OSError, ValueError):
                pass
    sent = await sending
    assert sent.resends > 0, "the kills should have made the senders resend"
    await ledger_check(settings, engine, Run(feed, sent.at, started_ms, {}, None), timeout_s=300)
    async with engine.connect() as conn:
        accepted = await conn.scalar(
            text("SELECT count(DISTINCT message_id) FROM audit_event WHERE actor = 'gateway'"
                 " AND action = 'gateway.accepted' AND message_id = ANY(:ids)"),
            {"ids": [m.message_id for m in feed.messages]},
        )  # fmt: skip
    assert accepted >= sum(1 for m in feed.messages if m.expect_code is None)


def test_compressed_transfer_syntaxes_are_accepted(
    settings: Settings, gateway_stack: local_stack.Stack, tmp_path: Path
) -> None:
    """JPEG 2000, JPEG lossless and RLE are negotiated, and a JPEG 2000 CR film (from
    pydicom-data) is stored."""
    from pydicom.uid import JPEG2000Lossless, JPEGLosslessSV1, RLELossless  # noqa: PLC0415
    from pynetdicom import AE  # noqa: PLC0415

    film = pydicom.dcmread(get_testdata_file("RG1_J2KR.dcm"))
    film.SOPInstanceUID = pydicom.uid.generate_uid()
    film.file_meta.MediaStorageSOPInstanceUID = film.SOPInstanceUID
    film.PatientID = f"J2K{uuid.uuid4().hex[:8]}"
    path = tmp_path / "j2k.dcm"
    film.save_as(path, enforce_file_format=True)
    ae = AE(ae_title="PYNETDICOM")
    for syntax in (JPEG2000Lossless, JPEGLosslessSV1, RLELossless):
        ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1", [syntax])
    assoc = ae.associate("127.0.0.1", settings.dicom_port, ae_title=settings.dicom_ae_title)
    assert assoc.is_established
    try:
        accepted = {c.transfer_syntax[0] for c in assoc.accepted_contexts}
        assert accepted == {JPEG2000Lossless, JPEGLosslessSV1, RLELossless}
        assert int(assoc.send_c_store(path).Status) == 0
    finally:
        assoc.release()
