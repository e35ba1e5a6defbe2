"""What producer compression costs and saves, per kind of record, side by side in one
run: lz4 (MedStream's relays), zstd and none, on the records the pipeline carries.

    make up && .venv/bin/python bench/e2e/compression.py

Each record is produced with ``send_and_wait`` (idempotent, acks=all, over SCRAM and
TLS, as the services do) to a throwaway topic, in interleaved rounds. Reported: the
median time per record and the bytes each codec leaves, for a vital-sign event (JSON),
the demo's 33 KB phantom film, and a 7.2 MB CR chest film from pydicom-data, as an
identified-record envelope would carry it (base64 in JSON). Results:
bench/results/e2e-compression.json.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cramjam
from pydicom.data import get_testdata_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.demo.feed import hospital_feed  # noqa: E402
from medstream.kafka import ensure_topics, make_producer  # noqa: E402
from medstream.settings import get_settings  # noqa: E402
from medstream.topics import EHR_INBOUND_DICOM, EHR_INBOUND_FHIR, Topic  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "e2e-compression.json"
TOPIC = "bench.compression"
ROUNDS = 5
CODECS: tuple[str | None, ...] = ("lz4", "zstd", None)


def records() -> dict[str, bytes]:
    feed = hospital_feed(patients=1, hours=2, malformed=0, run="bc")
    vitals = next(m.value for m in feed.messages if m.topic == EHR_INBOUND_FHIR.name)
    phantom = next(m.value for m in feed.messages if m.topic == EHR_INBOUND_DICOM.name)
    film = Path(get_testdata_file("RG1_UNCI.dcm")).read_bytes()

    def envelope(raw: bytes) -> bytes:
        return json.dumps({"payload": {"source": base64.b64encode(raw).decode()}}).encode()

    return {
        "vital-sign event (JSON)": vitals,
        "phantom film envelope (33 KB DICOM)": envelope(phantom),
        "CR chest film envelope (7.2 MB DICOM)": envelope(film),
    }


def compressed_size(codec: str | None, value: bytes) -> int:
    if codec is None:
        return len(value)
    return len(
        bytes(cramjam.lz4.compress(value) if codec == "lz4" else cramjam.zstd.compress(value))
    )


async def produce(codec: str | None, value: bytes, count: int) -> float:
    producer = make_producer(get_settings(), compression_type=codec)
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC, value)  # connections and metadata first
        started = time.perf_counter()
        for _ in range(count):
            await producer.send_and_wait(TOPIC, value)
        return (time.perf_counter() - started) / count
    finally:
        await producer.stop()


async def main() -> None:
    settings = get_settings()
    await ensure_topics(
        settings,
        [Topic(TOPIC, "bench", "application/octet-stream", partitions=1, retention_ms=600_000)],
    )
    results: dict[str, Any] = {}
    for kind, value in records().items():
        count = 3 if len(value) > 1_000_000 else 50
        times: dict[str, list[float]] = {str(c): [] for c in CODECS}
        for _ in range(ROUNDS):
            for codec in CODECS:
                times[str(codec)].append(await produce(codec, value, count))
        none = statistics.median(times["None"])
        results[kind] = {
            str(codec): {
                "ms_per_record": round(statistics.median(times[str(codec)]) * 1000, 2),
                "vs_none": round(statistics.median(times[str(codec)]) / none, 2),
                "bytes_left": round(compressed_size(codec, value) / len(value), 3),
            }
            for codec in CODECS
        }
        print(kind, len(value), "bytes:", results[kind])
    results["meta"] = {"when": datetime.now(UTC).isoformat(timespec="seconds"), "rounds": ROUNDS}
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    asyncio.run(main())
