"""The demo feed sent the way a hospital's systems send it: HL7 v2 over MLLP, DICOM
with C-STORE, FHIR with HTTP posts to the gateway (``medstream demo --via gateways``).

Each sender behaves as a well-made interface engine does: it waits for the
acknowledgement of each message, and resends when the answer says "try again" (MLLP
AE, DICOM 0xA7xx, HTTP 503) or when none comes (a timeout, a dropped connection, a
gateway restarting). A refusal (AR, 0xC000, 400) is final. One patient's messages go
over one connection, in order.

The ledger knows a message by the id ingestion gives it, so ``rekeyed`` gives the
feed those ids: what the gateway derives from the content (MSH-10, Bundle.id,
SOPInstanceUID), since no ``message-id`` header crosses MLLP or DICOM.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pydicom
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from medstream.clinical import SourceFormat
from medstream.demo.feed import Feed, FeedMessage
from medstream.ingest import DERIVE_ID, FORMAT_OF_TOPIC
from medstream.ops.gateways.mllp import END_BLOCK, frame
from medstream.ops.gateways.smart import ASSERTION_TYPE, register_client
from medstream.received import message_id_for
from medstream.settings import Settings

DEMO_CLIENT = "medstream-demo"
DEMO_AE_TITLE = "MEDSTREAM-DEMO"
RETRY_S = 1.0
Advance = Callable[[int], None]


def rekeyed(feed: Feed) -> Feed:
    """The feed under the ids its messages get at the gateway. A message refused at the
    door is rejected by the gateway (stage ``gateway``), not by ingestion. Two kinds
    have no gateway form and are left out: messages whose test is their Kafka headers,
    and the oversized DICOM file, which is a data set padded with zero bytes: DIMSE
    carries data sets, not files, so the padding never crosses (STOW-RS, which carries
    bytes, is tested with it in tests/e2e/test_gateways.py)."""
    messages = []
    for message in feed.messages:
        if message.headers is not None or message.expect_code == "dicom.too_large":
            continue
        source_format = FORMAT_OF_TOPIC[message.topic]
        derived = message_id_for(message.value, (), DERIVE_ID[source_format])
        stage = "gateway" if message.expect_stage == "ingestion" else message.expect_stage
        messages.append(replace(message, message_id=derived, expect_stage=stage))
    return Feed(messages, feed.patients)


@dataclass
class Sent:
    """When each message was acknowledged (or finally refused), and how many resends."""

    at: dict[str, datetime]
    resends: int = 0


def demo_token(settings: Settings, scope: str = "system/*.write system/*.read") -> str:
    """An access token for the demo's own client (registered on first use, with an EC
    key kept in the state folder), by the SMART Backend Services flow."""
    folder = settings.state_dir / "gateway"
    folder.mkdir(parents=True, exist_ok=True)
    key_file = folder / "demo-client-key.pem"
    if not key_file.exists():
        made = ec.generate_private_key(ec.SECP384R1())
        key_file.write_bytes(
            made.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
    key = serialization.load_pem_private_key(key_file.read_bytes(), None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    register_client(settings, DEMO_CLIENT, public.decode(), ["system/*.write", "system/*.read"])
    return request_token(settings, DEMO_CLIENT, key, "ES384", scope)


def request_token(settings: Settings, client: str, key: object, algorithm: str, scope: str) -> str:
    """Ask the gateway for an access token with a signed client assertion."""
    audience = f"http://{settings.gateway_host}:{settings.http_port}/auth/token"
    assertion = jwt.encode(
        {
            "iss": client,
            "sub": client,
            "aud": audience,
            "exp": int(time.time()) + 240,
            "jti": uuid.uuid4().hex,
        },
        key,  # type: ignore[arg-type]
        algorithm=algorithm,
    )
    form = (
        f"grant_type=client_credentials&client_assertion_type={ASSERTION_TYPE}"
        f"&client_assertion={assertion}&scope={scope.replace(' ', '%20')}"
    )
    status, body = http_call(
        settings, "POST", "/auth/token", form.encode(), "application/x-www-form-urlencoded"
    )
    if status != 200:
        raise RuntimeError(f"the gateway refused the demo's token request ({status}): {body!r}")
    return str(json.loads(body)["access_token"])


def http_call(
    settings: Settings,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/fhir+json",
    token: str | None = None,
    timeout_s: float = 60,
) -> tuple[int, bytes]:
    """One HTTP request to the gateway: the status and the body."""
    connection = http.client.HTTPConnection(
        settings.gateway_host, settings.http_port, timeout=timeout_s
    )
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


async def _mllp_send(
    settings: Settings, messages: Sequence[FeedMessage], sent: Sent, deadline: float
) -> None:
    """One connection's messages, in order, each until AA/CA or a final AR/CR."""
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    for message in messages:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"MLLP: {message.message_id} was never acknowledged")
            try:
                if connection is None:
                    connection = await asyncio.open_connection(
                        settings.gateway_host, settings.mllp_port
                    )
                reader, writer = connection
                writer.write(frame(message.value))
                await writer.drain()
                reply = await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)
                code = reply.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in reply else ""
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                code = ""
                if connection is not None:
                    connection[1].close()
                connection = None
            if code in ("AA", "CA", "AR", "CR"):
                sent.at[message.message_id] = datetime.now(UTC)
                break
            sent.resends += 1
            await asyncio.sleep(RETRY_S)
    if connection is not None:
        connection[1].close()
        with contextlib.suppress(Exception):
            await connection[1].wait_closed()


def _dicom_send(
    settings: Settings, messages: Sequence[FeedMessage], sent: Sent, deadline: float
) -> None:
    """C-STORE each instance until success or a final failure (not 0xA7xx)."""
    from pynetdicom import AE  # noqa: PLC0415  (only this sender needs it)

    ae = AE(ae_title=DEMO_AE_TITLE)
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1")  # CR Image Storage
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1.1")  # DX Image Storage
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")  # Secondary Capture
    assoc = None
    folder = tempfile.TemporaryDirectory()
    for n, message in enumerate(messages):
        # Sent from a file, so the data set's bytes cross as they are (a Dataset would
        # be decoded and re-encoded first).
        path = Path(folder.name) / f"{n}.dcm"
        path.write_bytes(message.value)
        if not _dimse_can_send(path):
            # Bytes no DIMSE client can send (no preamble, not a data set): an archive
            # would post them by STOW-RS, which carries bytes as they are.
            _stow_send(settings, message, sent, deadline)
            continue
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"DICOM: {message.message_id} was never stored")
            status = None
            try:
                if assoc is None or not assoc.is_established:
                    assoc = ae.associate(
                        settings.gateway_host, settings.dicom_port, ae_title=settings.dicom_ae_title
                    )
                if assoc.is_established:
                    response = assoc.send_c_store(path)
                    status = int(response.Status) if "Status" in response else None
            except (OSError, RuntimeError, ValueError):
                status = None
            if status is not None and (status == 0 or status & 0xFF00 != 0xA700):
                sent.at[message.message_id] = datetime.now(UTC)
                break
            sent.resends += 1
            if assoc is not None:
                assoc.abort()
                assoc = None
            time.sleep(RETRY_S)
    if assoc is not None and assoc.is_established:
        assoc.release()
    folder.cleanup()


def _dimse_can_send(path: Path) -> bool:
    try:
        pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001  (whatever pydicom cannot read, pynetdicom cannot send)
        return False
    return True


def _post_until_answered(
    settings: Settings,
    message: FeedMessage,
    path: str,
    body: bytes,
    content_type: str,
    sent: Sent,
    deadline: float,
    token: str | None = None,
) -> str | None:
    """POST ``body`` until the gateway answers for good (2xx, or a final 4xx): a new
    token after a 401, a resend after a 5xx or no answer. Returns the token in use, for
    the next message."""
    while time.monotonic() < deadline:
        try:
            token = token or demo_token(settings)
            status, _ = http_call(settings, "POST", path, body, content_type, token)
        except (OSError, RuntimeError, http.client.HTTPException):
            status = 0
        if status == 401:
            token = None  # expired: a new one, then resend
        elif status and status < 500:
            sent.at[message.message_id] = datetime.now(UTC)
            return token
        sent.resends += 1
        time.sleep(RETRY_S)
    raise TimeoutError(f"POST {path}: {message.message_id} was never answered")


def _stow_send(settings: Settings, message: FeedMessage, sent: Sent, deadline: float) -> None:
    """One instance by STOW-RS."""
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + message.value
        + f"\r\n--{boundary}--\r\n".encode()
    )
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    _post_until_answered(settings, message, "/studies", body, content_type, sent, deadline)


def _fhir_send(
    settings: Settings, messages: Sequence[FeedMessage], sent: Sent, deadline: float
) -> None:
    """Each resource or Bundle, in order, on one token while it lasts."""
    token = None
    for message in messages:
        path = _fhir_path(message.value)
        token = _post_until_answered(
            settings, message, path, message.value, "application/fhir+json", sent, deadline, token
        )


def _fhir_path(value: bytes) -> str:
    try:
        data = json.loads(value)
    except ValueError:
        return "/fhir/Bundle"  # unreadable: posted where a type is checked, and refused
    kind = data.get("resourceType") if isinstance(data, dict) else None
    if kind == "Bundle" and data.get("type") in ("transaction", "batch"):
        return "/fhir"
    return f"/fhir/{kind}" if isinstance(kind, str) and kind.isalpha() else "/fhir/Bundle"


async def send_via_gateways(
    settings: Settings,
    messages: Sequence[FeedMessage],
    advance: Advance,
    *,
    connections: int = 4,
    timeout_s: float = 900,
) -> Sent:
    """Send ``messages`` through the gateways (rekeyed ids), as interface engines do;
    return when each was answered for good."""
    sent = Sent({})
    deadline = time.monotonic() + timeout_s
    by_format: dict[SourceFormat, list[FeedMessage]] = {f: [] for f in SourceFormat}
    for message in messages:
        by_format[FORMAT_OF_TOPIC[message.topic]].append(message)
    lanes: list[list[FeedMessage]] = [[] for _ in range(connections)]
    for message in by_format[SourceFormat.HL7V2]:
        lanes[hash(message.key) % connections].append(message)
    jobs = [_mllp_send(settings, lane, sent, deadline) for lane in lanes if lane]
    jobs.append(
        asyncio.to_thread(_dicom_send, settings, by_format[SourceFormat.DICOM], sent, deadline)
    )
    jobs.append(
        asyncio.to_thread(_fhir_send, settings, by_format[SourceFormat.FHIR], sent, deadline)
    )
    done = 0

    async def progress() -> None:
        nonlocal done
        while True:
            await asyncio.sleep(1)
            advance(len(sent.at) - done)
            done = len(sent.at)

    ticker = asyncio.create_task(progress())
    try:
        await asyncio.gather(*jobs)
    finally:
        ticker.cancel()
        advance(len(sent.at) - done)
    return sent
