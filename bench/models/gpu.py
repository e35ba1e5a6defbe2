"""The three models on a GPU: batch size 1 against batched, prediction alone and with
the explanation the workers make, under the workers' own code (bf16 autocast).

    python3 bench/models/gpu.py OUT.json

Run on a machine with CUDA (the device tool's H200 here). Kafka, PostgreSQL and Redis
are not on that machine, so this measures the model path of each worker, the part a GPU
changes; the Kafka-fed runs are bench/models/workers.py on the CPU machine.

``MEDSTREAM_BENCH_MINILM`` may name a folder with a copy of all-MiniLM-L6-v2 (the
installed package's weights are 90 MB; the device's file transfer carries an fp16 copy
of 45 MB): its checksum then differs from the package's, which this benchmark accepts
and records.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.inference import inference_mode, select_device  # noqa: E402
from medstream.models.package import latest  # noqa: E402

QUICK = bool(os.environ.get("MEDSTREAM_BENCH_QUICK"))  # a smoke run on the CPU
SECONDS = 0.2 if QUICK else 2.0


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def sizes(*values: int) -> tuple[int, ...]:
    return values[:2] if QUICK else values


def rate(run: Callable[[], object], items: int, seconds: float = SECONDS) -> dict[str, float]:
    """Items per second and per-call latency, after a warm-up, synchronised."""
    for _ in range(1 if QUICK else 3):
        run()
    _sync()
    calls: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(calls) < (1 if QUICK else 5):
        started = time.perf_counter()
        run()
        _sync()
        calls.append(time.perf_counter() - started)
    median = statistics.median(calls)
    return {
        "per_s": round(items / median, 1),
        "p50_ms": round(median * 1000, 3),
        "p99_ms": round(float(np.percentile(calls, 99)) * 1000, 3),
    }


def monitoring(device: torch.device) -> dict[str, Any]:
    from medstream.monitoring import model as m  # noqa: PLC0415
    from medstream.monitoring.simulator import simulate  # noqa: PLC0415

    package = latest(ROOT / "models", m.NAME)
    model = m.load_model(package).to(device)
    windows = torch.from_numpy(m.examples(simulate(60, 3))[0][:1024]).to(device)

    def forward(n: int) -> Callable[[], object]:
        def run() -> object:
            with inference_mode(device):
                return model(windows[:n])

        return run

    return {f"batch{n}": rate(forward(n), n) for n in sizes(1, 64, 1024)}


def imaging(device: torch.device) -> dict[str, Any]:
    from medstream.imaging import model as m  # noqa: PLC0415

    classifier = m.Classifier(latest(ROOT / "models", m.NAME), device)
    inputs, _ = m.dataset(256, 5)
    out: dict[str, Any] = {}
    for n in sizes(1, 16, 64, 256):
        batch = np.ascontiguousarray(inputs[:n])
        out[f"predict_batch{n}"] = rate(lambda b=batch: classifier.probabilities(b), n)
        out[f"predict_and_gradcam_batch{n}"] = rate(lambda b=batch: classifier.predict(b), n)
    return out


def notes(device: torch.device) -> dict[str, Any]:
    from medstream.models import minilm  # noqa: PLC0415
    from medstream.notes import model as m  # noqa: PLC0415
    from medstream.notes.generator import reports  # noqa: PLC0415

    package = latest(ROOT / "models", m.NAME)
    copy = os.environ.get("MEDSTREAM_BENCH_MINILM")
    note = "installed package"
    if copy:
        minilm.base_folder = lambda: Path(copy)  # type: ignore[assignment]
        m.base_sha256 = lambda: package.manifest["base_sha256"]  # type: ignore[assignment]
        note = f"fp16 copy of the base weights from {copy}"
    labeller = m.Labeller(package, device)
    texts = [r.text for r in reports(256, 8)]
    out: dict[str, Any] = {"base_weights": note}
    for n in sizes(1, 32, 128):
        batch = texts[:n]
        out[f"predict_batch{n}"] = rate(lambda b=batch: labeller.probabilities(b), n)
        out[f"predict_and_attribution_batch{n}"] = rate(lambda b=batch: labeller.predict(b), n)
    return out


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench/results/models-gpu.json"
    device = select_device()
    report: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "precision": "bf16 autocast (the workers' mixed precision)",
        "selected_device": str(device),
    }
    for name, fn in (("monitoring", monitoring), ("imaging", imaging), ("notes", notes)):
        started = time.perf_counter()
        try:
            report[name] = fn(device)
        except Exception:  # noqa: BLE001  (record and go on: one model must not lose the rest)
            report[name] = {"error": traceback.format_exc()[-1500:]}
        report[name]["bench_seconds"] = round(time.perf_counter() - started, 1)
        target.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({name: report[name]}, indent=2), flush=True)


if __name__ == "__main__":
    main()
