"""DICOM networking: a C-STORE and C-ECHO SCP (pynetdicom), acknowledging only what
Kafka holds.

Each instance is checked as ingestion will check it and published to
``ehr.inbound.dicom`` before the C-STORE response is sent. The status is success
(0x0000) only once Kafka acknowledged; a refused instance gets 0xC000 (cannot
understand) with our stable code in Error Comment, and its bytes are dead-lettered
(one over the record limit is refused with ``gateway.too_large`` and audited, without
being read); one sent while Kafka is unavailable gets 0xA700 (out of resources), which
senders retry. Associations from a calling AE title outside the
allow-list are rejected and audited.

pynetdicom serves each association on a thread of its own; the publishing runs on
the service's event loop, and the thread waits for its outcome.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from concurrent.futures import TimeoutError as FutureTimeout
from threading import Thread
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from medstream.clinical import SourceFormat
from medstream.errors import InvalidMessage
from medstream.ops.gateways.edge import (
    ACK_LATENCY,
    CONNECTIONS,
    CONNECTIONS_TOTAL,
    MAX_RECORD_BYTES,
    TOO_LARGE,
    EdgePublisher,
    KafkaUnavailable,
)
from medstream.settings import Settings

log = logging.getLogger(__name__)

PROTOCOL = "dicom"
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# An association refused: a calling AE title off the allow-list, or past the limit.
ASSOCIATION_REJECTED = "dicom.association_rejected"


class _ReusePortServer(ThreadedAssociationServer):
    """Replicas of the gateway share the port (SO_REUSEPORT), as MLLP and HTTP do."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # type: ignore[union-attr]
        super().server_bind()


def calling_titles(settings: Settings) -> list[str]:
    """The allow-list of calling AE titles."""
    return [t.strip() for t in settings.dicom_calling_ae_titles.split(",") if t.strip()]


class DicomListener:
    """The C-STORE and C-ECHO SCP on MEDSTREAM_DICOM_PORT."""

    def __init__(
        self, edge: EdgePublisher, settings: Settings, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._edge = edge
        self._settings = settings
        self._loop = loop
        self._server: ThreadedAssociationServer | None = None
        self._established: set[int] = set()

    def start(self) -> None:
        """Bind and serve on a background thread."""
        settings = self._settings
        # pynetdicom logs every association at INFO: only its warnings are kept.
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        # Received data sets go to a temporary file, not memory (pynetdicom deletes it
        # after the handler): an instance is read only once its size is known to fit.
        _config.STORE_RECV_CHUNKED_DATASET = True
        ae = AE(ae_title=settings.dicom_ae_title)
        ae.require_calling_aet = calling_titles(settings)
        ae.maximum_associations = settings.gateway_max_connections
        ae.network_timeout = settings.gateway_idle_timeout_s
        ae.acse_timeout = 30
        # Long enough for the slowest outcome: the checks' budget, then Kafka's.
        ae.dimse_timeout = settings.message_budget_s + settings.gateway_ack_timeout_s + 30
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._store),
            (evt.EVT_C_ECHO, self._echo),
            (evt.EVT_REJECTED, self._rejected),
            (evt.EVT_ESTABLISHED, self._opened),
            (evt.EVT_RELEASED, self._closed),
            (evt.EVT_ABORTED, self._closed),
        ]
        server = ae.make_server(
            (settings.gateway_host, settings.dicom_port),
            evt_handlers=handlers,
            server_class=_ReusePortServer,
        )
        self._server = server
        Thread(target=server.serve_forever, name="dicom-scp", daemon=True).start()

    def stop(self) -> None:
        """Stop accepting and close the server socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _wait(self, coroutine: Any) -> Any:
        budget = self._settings.message_budget_s + self._settings.gateway_ack_timeout_s + 10
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=budget)

    def _store(self, event: evt.Event) -> Dataset | int:
        peer = str(event.assoc.requestor.address)
        path = event.dataset_path
        try:
            if path.stat().st_size > MAX_RECORD_BYTES:
                self._wait(self._edge.audit_refusal(PROTOCOL, peer, TOO_LARGE, "message.rejected"))
                status, comment = CANNOT_UNDERSTAND, TOO_LARGE
            else:
                status, comment = self._wait(self.store(path.read_bytes(), peer))
        except KafkaUnavailable as unavailable:
            status, comment = OUT_OF_RESOURCES, unavailable.code
        except FutureTimeout:
            status, comment = OUT_OF_RESOURCES, "gateway.timeout"
        response = Dataset()
        response.Status = status
        if comment:
            response.ErrorComment = comment[:64]
        return response

    async def store(self, raw: bytes, peer: str) -> tuple[int, str | None]:
        """The C-STORE status of one Part 10 instance, and the Error Comment."""
        started = self._loop.time()
        try:
            outcome = await self._edge.submit(SourceFormat.DICOM, raw, protocol=PROTOCOL, peer=peer)
        except KafkaUnavailable as unavailable:
            return OUT_OF_RESOURCES, unavailable.code
        finally:
            ACK_LATENCY.labels(PROTOCOL).observe(self._loop.time() - started)
        if isinstance(outcome, InvalidMessage):
            # Final: resending the same instance cannot succeed (A7xx would say "retry",
            # and senders would, forever).
            return CANNOT_UNDERSTAND, outcome.code
        return SUCCESS, None

    def _echo(self, event: evt.Event) -> int:
        return SUCCESS

    def _opened(self, event: evt.Event) -> None:
        CONNECTIONS.labels(PROTOCOL).inc()
        CONNECTIONS_TOTAL.labels(PROTOCOL).inc()
        self._established.add(id(event.assoc))

    def _closed(self, event: evt.Event) -> None:
        # An association aborted before it was established was never counted.
        if id(event.assoc) in self._established:
            self._established.discard(id(event.assoc))
            CONNECTIONS.labels(PROTOCOL).dec()

    def _rejected(self, event: evt.Event) -> None:
        requestor = event.assoc.requestor
        # The calling AE title names a system, not a patient: it is what an auditor needs.
        peer = f"{requestor.address} AE {requestor.ae_title}"
        log.warning("DICOM association rejected", extra={"peer": peer})
        try:
            self._wait(self._edge.audit_refusal(PROTOCOL, peer, ASSOCIATION_REJECTED))
        except (KafkaUnavailable, FutureTimeout):
            log.warning("the rejected association could not be audited: Kafka is unavailable")
