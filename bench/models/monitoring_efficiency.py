"""Efficiency of the monitoring GRU on the CPU: fp32, dynamic int8 quantisation,
pruning and ONNX Runtime, side by side in one run, with held-out AUROC for each.

    .venv/bin/python bench/models/monitoring_efficiency.py

Timings alternate between the variants over several rounds and report medians, because
this machine is noisy; the ratios against fp32 are what to read.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "libs"))

from medstream.models.metrics import auroc  # noqa: E402
from medstream.models.package import latest  # noqa: E402
from medstream.monitoring import model as monitoring  # noqa: E402
from medstream.monitoring.simulator import simulate  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROUNDS = 5
SINGLE_CALLS = 300
MAX_AUROC_LOSS = 0.01

Predict = Callable[[np.ndarray], np.ndarray]


def torch_predictor(model: nn.Module) -> Predict:
    model.eval()

    def predict(batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    return predict


def pruned(model: monitoring.DeteriorationGRU, amount: float) -> monitoring.DeteriorationGRU:
    """L1 unstructured pruning of every GRU and head weight, made permanent."""
    clone = copy.deepcopy(model)
    for module, name in [(clone.head, "weight")] + [
        (clone.gru, n) for n, _ in clone.gru.named_parameters() if n.startswith("weight")
    ]:
        prune.l1_unstructured(module, name=name, amount=amount)
        prune.remove(module, name)
    return clone


def onnx_predictor(model: nn.Module, folder: Path) -> Predict | str:
    """ONNX Runtime, or the reason it is unavailable here."""
    try:
        import onnxruntime  # noqa: PLC0415
    except ImportError:
        return "onnxruntime is not installed (pip install onnxruntime)"
    path = folder / "monitoring.onnx"
    try:
        torch.onnx.export(
            model,
            (torch.zeros(1, monitoring.WINDOW, len(monitoring.FEATURES)),),
            str(path),
            input_names=["window"],
            output_names=["logit"],
            dynamic_axes={"window": {0: "batch"}},
            dynamo=False,
        )
    except Exception as exc:  # noqa: BLE001  (report why, do not fail the benchmark)
        return f"export failed: {type(exc).__name__}: {str(exc)[:160]}"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda batch: session.run(None, {"window": batch})[0]


def timings(predict: Predict, windows: np.ndarray) -> tuple[list[float], list[float], float]:
    """Per-call latencies at batch 1 and at batch 64, and batch-64 throughput (seq/s)."""
    single = []
    for i in range(SINGLE_CALLS):
        started = time.perf_counter()
        predict(windows[i : i + 1])
        single.append(time.perf_counter() - started)
    batched = []
    started_all = time.perf_counter()
    for start in range(0, len(windows), 64):
        started = time.perf_counter()
        predict(windows[start : start + 64])
        batched.append(time.perf_counter() - started)
    return single, batched, len(windows) / (time.perf_counter() - started_all)


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99))


def main() -> None:
    package = latest(ROOT / "models", monitoring.NAME)
    base = monitoring.load_model(package)
    windows, labels, _ = monitoring.examples(simulate(1000, 20261128))
    variants: dict[str, Predict | str] = {
        "fp32": torch_predictor(base),
        "int8_dynamic": torch_predictor(
            torch.ao.quantization.quantize_dynamic(
                copy.deepcopy(base), {nn.GRU, nn.Linear}, dtype=torch.qint8
            )
        ),
        "pruned_30pct": torch_predictor(pruned(base, 0.3)),
        "pruned_60pct": torch_predictor(pruned(base, 0.6)),
        "onnxruntime": onnx_predictor(base, Path(tempfile.mkdtemp(prefix="medstream-onnx-"))),
    }
    runnable = {k: v for k, v in variants.items() if not isinstance(v, str)}
    quality = {
        name: round(auroc(labels, predict(windows)), 4) for name, predict in runnable.items()
    }
    rounds: dict[str, list[tuple[list[float], list[float], float]]] = {
        name: [] for name in runnable
    }
    for _ in range(ROUNDS):  # alternate, so noise hits every variant alike
        for name, predict in runnable.items():
            rounds[name].append(timings(predict, windows))
    results: dict[str, Any] = {}
    for name, runs in rounds.items():
        single = [x for run in runs for x in run[0]]
        batched = [x for run in runs for x in run[1]]
        results[name] = {
            "auroc": quality[name],
            "batch1_seq_per_s": round(1 / statistics.median(single), 1),
            "batch1_p99_ms": round(p99(single) * 1000, 3),
            "batch64_seq_per_s": round(statistics.median(run[2] for run in runs), 1),
            "batch64_p99_ms": round(p99(batched) * 1000, 3),
        }
    fp32 = results["fp32"]
    for entry in results.values():
        entry["speedup_batch64_vs_fp32"] = round(
            entry["batch64_seq_per_s"] / fp32["batch64_seq_per_s"], 2
        )
        entry["auroc_loss_vs_fp32"] = round(fp32["auroc"] - entry["auroc"], 4)
    eligible = [n for n, e in results.items() if e["auroc_loss_vs_fp32"] <= MAX_AUROC_LOSS]
    default = max(eligible, key=lambda n: results[n]["batch64_seq_per_s"])
    report = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads",
        "model": f"{package.name} {package.version} ({package.checksum[:12]})",
        "held_out_windows": len(labels),
        "variants": results,
        "unavailable": {k: v for k, v in variants.items() if isinstance(v, str)},
        "fastest_within_0.01_auroc": default,
        "batching_gain_fp32": round(fp32["batch64_seq_per_s"] / fp32["batch1_seq_per_s"], 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models-monitoring-efficiency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
