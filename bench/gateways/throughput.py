"""The gateways against their practical limits, side by side in one run.

    make up && .venv/bin/python bench/gateways/throughput.py     (or: make bench-gateways)

- **MLLP** against the raw Kafka producer, on the same HL7 v2 messages: one sender
  sends a message and waits for its acknowledgement before the next (as HL7 senders
  do), over 1 and 4 concurrent connections; the raw side awaits each ``send_and_wait``
  (acks=all) the same way, with as many concurrent producers' tasks. The gaps are
  what the gateway adds: framing, ingestion's checks, the audit event and the ACK.
- **C-STORE** into the gateway against dcmtk's ``storescp`` writing to local disk, on
  the same files (copies of pydicom-data's CR chest film, each a new instance): MB/s.

Rounds alternate (gateway, reference, gateway, reference, ...) so the drift of this
noisy 2-core machine hits both alike. Only the gateway runs meanwhile (Kafka,
PostgreSQL and Redis too): the other services are stopped for the bench, so the
models' work on what it sends does not share the two cores with it; they are started
again at the end and take up what waits in Kafka. The C-STORE part also reports a
pynetdicom SCP that does nothing (the protocol library's own ceiling on this machine).
Results: bench/results/gateways.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pynetdicom import AE

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream import stack as local_stack  # noqa: E402
from medstream.demo.feed import hospital_feed  # noqa: E402
from medstream.deployment import SERVICES  # noqa: E402
from medstream.kafka import make_producer  # noqa: E402
from medstream.ops.gateways.mllp import END_BLOCK, frame  # noqa: E402
from medstream.settings import get_settings  # noqa: E402
from medstream.topics import EHR_INBOUND_HL7V2  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "gateways.json"
ROUNDS = 3
MESSAGES_PER_ROUND = 200
FILMS = 8
STORESCP_PORT = 11199
NULL_SCP_PORT = 11198


def hl7_messages(count: int) -> list[bytes]:
    """HL7 v2 vitals messages, unique to this run (new MSH-10s)."""
    feed = hospital_feed(
        patients=60, hours=24, malformed=0, documents=False, run=f"bg{uuid.uuid4().hex[:6]}"
    )
    found = [m.value for m in feed.messages if m.topic == EHR_INBOUND_HL7V2.name]
    return found[:count]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def mllp_round(
    messages: list[bytes], connections: int, port: int
) -> tuple[float, list[float]]:
    lanes = [messages[i::connections] for i in range(connections)]
    latencies: list[float] = []

    async def lane(batch: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for message in batch:
            started = time.perf_counter()
            writer.write(frame(message))
            await writer.drain()
            reply = await reader.readuntil(END_BLOCK)
            latencies.append(time.perf_counter() - started)
            if b"MSA|AA|" not in reply:
                raise RuntimeError(f"not acknowledged: {reply[:200]!r}")
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(lane(b) for b in lanes))
    return len(messages) / (time.perf_counter() - started), latencies


async def kafka_round(messages: list[bytes], connections: int) -> tuple[float, list[float]]:
    settings = get_settings()
    producer = make_producer(settings)
    await producer.start()
    lanes = [messages[i::connections] for i in range(connections)]
    latencies: list[float] = []

    async def lane(batch: list[bytes]) -> None:
        for message in batch:
            started = time.perf_counter()
            await producer.send_and_wait(EHR_INBOUND_HL7V2.name, message)
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(lane(b) for b in lanes))
        return len(messages) / (time.perf_counter() - started), latencies
    finally:
        await producer.stop()


def films(folder: Path) -> list[Path]:
    source = pydicom.dcmread(get_testdata_file("RG1_UNCI.dcm"))
    paths = []
    for n in range(FILMS):
        source.SOPInstanceUID = pydicom.uid.generate_uid()
        source.file_meta.MediaStorageSOPInstanceUID = source.SOPInstanceUID
        source.PatientID = f"BENCH{n}{uuid.uuid4().hex[:6]}"
        path = folder / f"film{n}.dcm"
        source.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def cstore_round(paths: list[Path], port: int, ae_title: str) -> float:
    ae = AE(ae_title="STORESCU")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.1")
    size = sum(p.stat().st_size for p in paths)
    started = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=ae_title)
    if not assoc.is_established:
        raise RuntimeError(f"no association with {ae_title} on {port}")
    for path in paths:
        status = assoc.send_c_store(path)
        if int(status.Status) != 0:
            raise RuntimeError(f"C-STORE to {ae_title} failed: 0x{int(status.Status):04X}")
    assoc.release()
    return size / (time.perf_counter() - started) / 1e6


def null_scp(port: int) -> Any:
    """A C-STORE SCP that only receives: pynetdicom's ceiling."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt  # noqa: PLC0415

    ae = AE(ae_title="NULLSCP")
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)

    def received(event: Any) -> int:
        event.encoded_dataset(include_meta=True)
        return 0

    return ae.start_server(
        ("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, received)]
    )


def only_the_gateway(settings: Any) -> Callable[[], None]:
    """Stop every service but the gateway; return what starts them all again."""
    stack = local_stack.Stack(settings.state_dir)
    bin_dir = Path(sys.executable).parent
    every = {spec.name: bin_dir / spec.entry_point for spec in SERVICES}
    local_stack.down_services(stack, print)
    local_stack.up_services(stack, {"gateway": every["gateway"]}, print)
    for _ in range(60):
        if _listening(settings.http_port) and _listening(settings.dicom_port):
            break
        time.sleep(0.5)

    def restore() -> None:
        local_stack.down_services(stack, print)
        local_stack.up_services(stack, every, print)

    return restore


def _listening(port: int) -> bool:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def main() -> None:
    settings = get_settings()
    restore = only_the_gateway(settings)
    try:
        measure(settings)
    finally:
        restore()


def measure(settings: Any) -> None:
    if shutil.which("storescp") is None:
        raise SystemExit("dcmtk is missing: sudo apt-get install -y dcmtk")
    messages = hl7_messages(MESSAGES_PER_ROUND * ROUNDS * 2 * 2)
    chunks = iter(
        [messages[i : i + MESSAGES_PER_ROUND] for i in range(0, len(messages), MESSAGES_PER_ROUND)]
    )
    results: dict[str, Any] = {"mllp": {}, "cstore": {}}
    for connections in (1, 4):
        rates: dict[str, list[float]] = {"mllp": [], "kafka": []}
        latency: dict[str, list[float]] = {"mllp": [], "kafka": []}
        for _ in range(ROUNDS):
            rate, lat = asyncio.run(mllp_round(next(chunks), connections, settings.mllp_port))
            rates["mllp"].append(rate)
            latency["mllp"] += lat
            rate, lat = asyncio.run(kafka_round(next(chunks), connections))
            rates["kafka"].append(rate)
            latency["kafka"] += lat
        row = {
            side: {
                "messages_per_s": round(statistics.median(rates[side]), 1),
                "ack_p50_ms": round(percentile(latency[side], 0.5) * 1000, 2),
                "ack_p99_ms": round(percentile(latency[side], 0.99) * 1000, 2),
            }
            for side in ("mllp", "kafka")
        }
        row["mllp_over_kafka_rate"] = round(
            row["mllp"]["messages_per_s"] / row["kafka"]["messages_per_s"], 2
        )
        results["mllp"][f"{connections}_connections"] = row
        print(f"MLLP, {connections} connection(s): {row}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = folder / "storescp"
        out.mkdir()
        scp = subprocess.Popen(
            ["storescp", "-aet", "REFERENCE", "-od", str(out), "+B", str(STORESCP_PORT)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        ceiling = null_scp(NULL_SCP_PORT)
        try:
            time.sleep(1)
            speeds: dict[str, list[float]] = {"gateway": [], "storescp": [], "null": []}
            for _ in range(ROUNDS):
                speeds["gateway"].append(
                    cstore_round(films(folder), settings.dicom_port, settings.dicom_ae_title)
                )
                speeds["storescp"].append(cstore_round(films(folder), STORESCP_PORT, "REFERENCE"))
                speeds["null"].append(cstore_round(films(folder), NULL_SCP_PORT, "NULLSCP"))
        finally:
            scp.terminate()
            scp.wait(10)
            ceiling.shutdown()
    results["cstore"] = {
        "gateway_mb_per_s": round(statistics.median(speeds["gateway"]), 1),
        "storescp_disk_mb_per_s": round(statistics.median(speeds["storescp"]), 1),
        "pynetdicom_null_scp_mb_per_s": round(statistics.median(speeds["null"]), 1),
        "film_mb": round(Path(get_testdata_file("RG1_UNCI.dcm")).stat().st_size / 1e6, 1),
    }
    results["cstore"]["gateway_over_storescp"] = round(
        results["cstore"]["gateway_mb_per_s"] / results["cstore"]["storescp_disk_mb_per_s"], 2
    )
    print(f"C-STORE ({FILMS} films a round): {results['cstore']}")
    results["meta"] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "rounds": ROUNDS,
        "messages_per_round": MESSAGES_PER_ROUND,
        "films_per_round": FILMS,
        "note": "medians of interleaved rounds; only the gateway of the services runs",
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
