"""The HTTP gateway: DICOMweb STOW-RS and a FHIR REST API (FastAPI on uvicorn).

- ``POST /studies``: STOW-RS; each instance is published to ``ehr.inbound.dicom``
  and listed in the DICOM JSON store response, stored or failed with its reason.
- ``POST /fhir`` (a transaction or batch Bundle) and ``POST /fhir/{type}``: put on
  ``ehr.inbound.fhir``; errors come back as OperationOutcome.
- ``GET /fhir/{type}/{id}`` and ``GET /fhir/{type}?subject=…``: the stored results,
  from PostgreSQL (``fhir_search``).
- ``GET /fhir/metadata``: the CapabilityStatement; ``POST /auth/token``: SMART Backend
  Services tokens (``smart``). Everything else needs a bearer token.

As with MLLP and DICOM, a post is answered with success only once Kafka holds it;
when Kafka is unavailable the answer is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Generator
from io import BytesIO
from urllib.parse import parse_qsl

import pydicom
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.ops.gateways import stow
from medstream.ops.gateways.edge import (
    ACK_LATENCY,
    REFUSALS,
    TOO_LARGE,
    EdgePublisher,
    KafkaUnavailable,
)
from medstream.ops.gateways.fhir_search import (
    READABLE,
    SearchError,
    capability_statement,
    parse_search,
    searchset,
    with_last_updated,
)
from medstream.ops.gateways.smart import AuthError, TokenIssuer, public_url
from medstream.settings import Settings
from medstream.topics import MAX_MESSAGE_BYTES

FHIR_JSON = "application/fhir+json"
PROTOCOL_FHIR, PROTOCOL_STOW = "fhir", "stow"
# A STOW-RS request may carry many instances; each must still fit one record.
MAX_STOW_BYTES = 8 * MAX_MESSAGE_BYTES
RETRY_AFTER_S = "5"
MAX_TOKEN_REQUEST_BYTES = 64 * 1024
# Each part costs a check, a publish and an audit event: a bound on the work of one
# request.
MAX_STOW_PARTS = 1000


def outcome(status: int, code: str, diagnostics: str, severity: str = "error") -> JSONResponse:
    """An OperationOutcome response; ``code`` is the FHIR issue type, and our stable
    code (if any) is in ``details``."""
    issue_type = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found"}.get(
        status, "transient" if status == 503 else "processing"
    )
    if severity == "information":
        issue_type = "informational"
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": severity,
                "code": issue_type,
                "details": {"coding": [{"system": "urn:medstream:error", "code": code}]},
                "diagnostics": diagnostics,
            }
        ],
    }
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="medstream"'
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON, headers=headers)


async def _body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes without reading it all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise InvalidMessage(TOO_LARGE, f"The request body is over the {limit}-byte limit.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidMessage(TOO_LARGE, f"The request body is over the {limit}-byte limit.")
        chunks.append(chunk)
    return b"".join(chunks)


class GatewayApi:
    """The handlers of the HTTP gateway, on one process's connections."""

    def __init__(
        self, edge: EdgePublisher, issuer: TokenIssuer, engine: AsyncEngine, settings: Settings
    ) -> None:
        self.edge = edge
        self.issuer = issuer
        self.engine = engine
        self.base = f"{public_url(settings)}/fhir"

    async def authorise(self, request: Request, wanted: str, protocol: str) -> str | JSONResponse:
        """The client id, or the 401/403 response (audited)."""
        try:
            return self.issuer.verify(request.headers.get("authorization"), wanted).client_id
        except AuthError as refused:
            REFUSALS.labels(protocol, refused.error).inc()
            with contextlib.suppress(KafkaUnavailable):
                # The scope asked for, not the path: a path may name a patient.
                await self.edge.audit_access(
                    "gateway.access_refused",
                    "unknown",
                    {"protocol": protocol, "scope": wanted[:80], "code": refused.error},
                    failed=True,
                )
            return outcome(refused.status, refused.error, refused.description)

    async def publish(
        self, source_format: SourceFormat, raw: bytes, protocol: str, client: str, peer: str
    ) -> tuple[str | None, InvalidMessage | KafkaUnavailable | None]:
        """Submit one message: its id, or the refusal."""
        started = time.monotonic()
        try:
            outcome = await self.edge.submit(
                source_format, raw, protocol=protocol, peer=peer, source_system=f"client:{client}"
            )
        except KafkaUnavailable as unavailable:
            return None, unavailable
        finally:
            ACK_LATENCY.labels(protocol).observe(time.monotonic() - started)
        if isinstance(outcome, InvalidMessage):
            return None, outcome
        return outcome, None

    async def refuse(
        self, raw: bytes, error: InvalidMessage, client: str, peer: str
    ) -> JSONResponse:
        """A post refused before its checks ran: dead-lettered and audited like any."""
        try:
            await self.edge.refuse(SourceFormat.FHIR, raw, error, protocol=PROTOCOL_FHIR, peer=peer)
        except KafkaUnavailable as unavailable:
            return _refused(unavailable)
        return _refused(error)

    async def metadata(self) -> JSONResponse:
        return JSONResponse(
            capability_statement(self.base, self.issuer.token_endpoint), media_type=FHIR_JSON
        )

    async def smart_configuration(self) -> JSONResponse:
        return JSONResponse(
            {
                "token_endpoint": self.issuer.token_endpoint,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
                "scopes_supported": ["system/*.read", "system/*.write", "system/*.rs"],
                "capabilities": ["client-confidential-asymmetric"],
            }
        )

    async def token(self, request: Request) -> JSONResponse:
        try:
            raw = await _body(request, MAX_TOKEN_REQUEST_BYTES)
        except InvalidMessage as error:
            return JSONResponse(
                {"error": "invalid_request", "error_description": error.reason}, 413
            )
        form = dict(parse_qsl(raw.decode("utf-8", "replace")))
        try:
            return JSONResponse(self.issuer.issue(form), headers={"Cache-Control": "no-store"})
        except AuthError as refused:
            REFUSALS.labels("auth", refused.error).inc()
            with contextlib.suppress(KafkaUnavailable):
                await self.edge.audit_access(
                    "gateway.access_refused",
                    "unknown",
                    {"protocol": "auth", "code": refused.error},
                    failed=True,
                )
            return JSONResponse(
                {"error": refused.error, "error_description": refused.description},
                status_code=refused.status,
            )

    async def posted(
        self, request: Request, wanted: str, protocol: str, limit: int
    ) -> tuple[str, bytes] | Response:
        """The client and body of an authorised post, or the response refusing it."""
        client = await self.authorise(request, wanted, protocol)
        if isinstance(client, Response):
            return client
        try:
            return client, await _body(request, limit)
        except InvalidMessage as error:
            with contextlib.suppress(KafkaUnavailable):
                await self.edge.audit_refusal(
                    protocol, _peer(request), error.code, "message.rejected"
                )
            return outcome(413, error.code, error.reason)

    async def transaction(self, request: Request) -> Response:
        posted = await self.posted(request, "system/Bundle.write", PROTOCOL_FHIR, MAX_MESSAGE_BYTES)
        if isinstance(posted, Response):
            return posted
        client, raw = posted
        try:
            bundle_type, entries = await asyncio.to_thread(_bundle_type, raw)
        except InvalidMessage as error:
            return await self.refuse(raw, error, client, _peer(request))
        message_id, refused = await self.publish(
            SourceFormat.FHIR, raw, PROTOCOL_FHIR, client, _peer(request)
        )
        if refused is not None:
            return _refused(refused)
        body = {
            "resourceType": "Bundle",
            "type": f"{bundle_type}-response",
            "entry": [{"response": {"status": "202 Accepted"}} for _ in range(entries)],
        }
        return JSONResponse(body, media_type=FHIR_JSON, headers={"X-Message-Id": str(message_id)})

    async def create(self, resource_type: str, request: Request) -> Response:
        posted = await self.posted(
            request, f"system/{resource_type}.write", PROTOCOL_FHIR, MAX_MESSAGE_BYTES
        )
        if isinstance(posted, Response):
            return posted
        client, raw = posted
        kind = await asyncio.to_thread(_resource_type, raw)
        if kind is not None and kind != resource_type:
            mismatch = InvalidMessage(
                "fhir.type_mismatch",
                f"POST /fhir/{resource_type[:40]} takes a {resource_type[:40]} resource; "
                "post a Bundle to /fhir",
            )
            return await self.refuse(raw, mismatch, client, _peer(request))
        message_id, refused = await self.publish(
            SourceFormat.FHIR, raw, PROTOCOL_FHIR, client, _peer(request)
        )
        if refused is not None:
            return _refused(refused)
        accepted = outcome(
            202,
            "gateway.accepted",
            f"Accepted for processing as message {message_id}.",
            severity="information",
        )
        accepted.headers["X-Message-Id"] = str(message_id)
        return accepted

    async def store_instances(self, request: Request) -> Response:
        posted = await self.posted(
            request, "system/ImagingStudy.write", PROTOCOL_STOW, MAX_STOW_BYTES
        )
        if isinstance(posted, Response):
            return posted
        client, raw = posted
        try:
            parts = stow.dicom_parts(request.headers.get("content-type", ""), raw)
        except stow.NotStowBody as error:
            with contextlib.suppress(KafkaUnavailable):
                await self.edge.audit_refusal(
                    PROTOCOL_STOW, _peer(request), "stow.media_type", "message.rejected"
                )
            return outcome(415, "stow.media_type", str(error))
        if len(parts) > MAX_STOW_PARTS:
            return outcome(
                413, "stow.too_many_parts", f"At most {MAX_STOW_PARTS} instances a request."
            )
        instances, unavailable = [], 0
        for part in parts:
            sop_class, sop_instance = await asyncio.to_thread(_uids, part)
            _, refused = await self.publish(
                SourceFormat.DICOM, part, PROTOCOL_STOW, client, _peer(request)
            )
            if isinstance(refused, KafkaUnavailable):
                unavailable += 1
                status, code = stow.OUT_OF_RESOURCES, refused.code
            elif refused is not None:
                status, code = stow.CANNOT_UNDERSTAND, refused.code
            else:
                status, code = 0, None
            instances.append(stow.StoredInstance(sop_class, sop_instance, status, code))
        if unavailable == len(parts):
            return outcome(503, KafkaUnavailable.code, str(KafkaUnavailable()), severity="error")
        status_code, body = stow.store_response(instances)
        return JSONResponse(body, status_code=status_code, media_type="application/dicom+json")

    async def read(self, resource_type: str, ident: str, request: Request) -> Response:
        client = await self.authorise(request, f"system/{resource_type}.read", PROTOCOL_FHIR)
        if isinstance(client, Response):
            return client
        if resource_type not in READABLE:
            return outcome(404, "fhir.not_supported", _not_readable(resource_type))
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        "SELECT resource, created_at FROM fhir_resource"
                        " WHERE id = :id AND resource_type = :type"
                    ),
                    {"id": ident, "type": resource_type},
                )
            ).first()
        if row is None:
            return outcome(404, "fhir.not_found", f"No {resource_type} with that id.")
        try:
            await self.edge.audit_access(
                "gateway.read", client, {"type": resource_type, "ids": [ident]}
            )
        except KafkaUnavailable as unavailable:
            return _refused(unavailable)
        return JSONResponse(with_last_updated(row[0], row[1]), media_type=FHIR_JSON)

    async def search(self, resource_type: str, request: Request) -> Response:
        client = await self.authorise(request, f"system/{resource_type}.read", PROTOCOL_FHIR)
        if isinstance(client, Response):
            return client
        if resource_type not in READABLE:
            return outcome(404, "fhir.not_supported", _not_readable(resource_type))
        try:
            found = parse_search(resource_type, list(request.query_params.multi_items()))
        except SearchError as error:
            return outcome(400, "fhir.search", str(error))
        page, total_sql = found.sql()
        async with self.engine.connect() as conn:
            rows = [tuple(r) for r in await conn.execute(text(page), found.parameters())]
            total = (await conn.execute(text(total_sql), found.parameters())).scalar_one()
        try:
            await self.edge.audit_access(
                "gateway.search",
                client,
                {"type": resource_type, "ids": [r[0] for r in rows], "total": total},
            )
        except KafkaUnavailable as unavailable:
            return _refused(unavailable)
        return JSONResponse(searchset(found, self.base, rows, total), media_type=FHIR_JSON)


def make_app(
    edge: EdgePublisher, issuer: TokenIssuer, engine: AsyncEngine, settings: Settings
) -> FastAPI:
    """The gateway's HTTP application."""
    api = GatewayApi(edge, issuer, engine, settings)
    app = FastAPI(title="MedStream gateway", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_api_route("/fhir/metadata", api.metadata, methods=["GET"])
    app.add_api_route(
        "/fhir/.well-known/smart-configuration", api.smart_configuration, methods=["GET"]
    )
    app.add_api_route("/auth/token", api.token, methods=["POST"])
    app.add_api_route("/fhir", api.transaction, methods=["POST"])
    app.add_api_route("/fhir/{resource_type}", api.create, methods=["POST"])
    app.add_api_route("/studies", api.store_instances, methods=["POST"])
    app.add_api_route("/fhir/{resource_type}/{ident}", api.read, methods=["GET"])
    app.add_api_route("/fhir/{resource_type}", api.search, methods=["GET"])
    return app


def _not_readable(resource_type: str) -> str:
    return f"{resource_type[:40]} is not served here; readable: {', '.join(READABLE)}"


def _refused(refused: InvalidMessage | KafkaUnavailable) -> JSONResponse:
    if isinstance(refused, KafkaUnavailable):
        return outcome(503, refused.code, str(refused))
    return outcome(400, refused.code, refused.reason)


def _resource_type(raw: bytes) -> str | None:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # ingestion's checks will say which
        return None
    found = data.get("resourceType") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _bundle_type(raw: bytes) -> tuple[str, int]:
    """The type of a posted Bundle (transaction or batch) and its number of entries;
    InvalidMessage otherwise."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidMessage("fhir.too_deep", "The JSON is nested too deeply.") from None
    except ValueError:
        raise InvalidMessage("fhir.not_json", "The body is not JSON.") from None
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise InvalidMessage(
            "fhir.not_a_bundle", "POST /fhir takes a Bundle; post a resource to /fhir/{type}."
        )
    if data.get("type") not in ("transaction", "batch"):
        raise InvalidMessage(
            "fhir.bundle_type", "POST /fhir takes a Bundle of type transaction or batch."
        )
    entries = data.get("entry")
    return str(data["type"]), len(entries) if isinstance(entries, list) else 0


def _uids(raw: bytes) -> tuple[str | None, str | None]:
    try:
        dataset = pydicom.dcmread(
            BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPClassUID", "SOPInstanceUID"]
        )
    except Exception:  # noqa: BLE001  (an unreadable part is listed without its UIDs)
        return None, None
    sop_class, sop_instance = dataset.get("SOPClassUID"), dataset.get("SOPInstanceUID")
    return (str(sop_class) if sop_class else None, str(sop_instance) if sop_instance else None)


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class _Server(uvicorn.Server):
    """uvicorn inside the gateway's own loop: the service handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class HttpListener:
    """uvicorn serving ``make_app`` on MEDSTREAM_HTTP_PORT (SO_REUSEPORT)."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        tls = {}
        if settings.gateway_tls_cert_file is not None:
            tls = {
                "ssl_certfile": str(settings.gateway_tls_cert_file),
                "ssl_keyfile": str(settings.gateway_tls_key_file),
            }
        config = uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            limit_concurrency=settings.gateway_max_connections,
            timeout_keep_alive=int(settings.gateway_idle_timeout_s),
            **tls,  # type: ignore[arg-type]
        )
        self._server = _Server(config)
        self._settings = settings
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve in the background."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((self._settings.gateway_host, self._settings.http_port))
        sock.listen(128)
        sock.setblocking(False)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))

    async def stop(self) -> None:
        """Finish the requests in flight, then stop."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)
