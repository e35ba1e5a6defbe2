"""The article's Q4 for each model: fp32, dynamic int8 quantisation, pruning
(torch.nn.utils.prune) and ONNX Runtime, side by side in one run on the CPU, with the
held-out quality of each.

    .venv/bin/python bench/models/efficiency.py [monitoring] [imaging] [notes]

Timings alternate between the variants over several rounds and report medians, because
this machine is noisy; the ratios against fp32 are what to read. The fastest variant
that loses at most 0.01 AUROC is named as the CPU default; the packages' runtimes
follow it (monitoring and imaging carry model.onnx when ONNX Runtime wins, the notes
package names its CPU runtime in preprocessing.json).
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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
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
from medstream.models.package import ModelPackage, latest  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ROUNDS = 3
MAX_AUROC_LOSS = 0.01
warnings.filterwarnings("ignore", category=DeprecationWarning)

Predict = Callable[[Any], np.ndarray]


@dataclass
class Subject:
    """One model under test: its held-out inputs, how to run and score it."""

    package: ModelPackage
    model: nn.Module
    inputs: Any  # indexable: inputs[i:j] is a batch
    count: int
    batch: int
    single_calls: int
    run: Callable[[nn.Module, Any], np.ndarray]
    quality: Callable[[np.ndarray], dict[str, float]]  # outputs of all inputs -> metrics
    onnx: Callable[[nn.Module, Path], Predict]
    prunable: Callable[[nn.Module], list[tuple[nn.Module, str]]]
    # The worker's path: prediction and explanation in one forward and backward pass.
    explained: Callable[[Any], object] | None = None


def _linear_weights(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def monitoring_subject() -> Subject:
    from medstream.monitoring import model as monitoring  # noqa: PLC0415
    from medstream.monitoring.simulator import simulate  # noqa: PLC0415

    package = latest(ROOT / "models", monitoring.NAME)
    windows, labels, _ = monitoring.examples(simulate(1000, 20261128))

    def run(model: nn.Module, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(batch)).numpy()

    def onnx(model: nn.Module, folder: Path) -> Predict:
        import onnxruntime  # noqa: PLC0415

        monitoring.export_onnx(model, folder)  # type: ignore[arg-type]
        session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        return lambda batch: session.run(None, {"window": batch})[0]

    def prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
        gru = model.gru  # type: ignore[union-attr]
        return [(model.head, "weight")] + [  # type: ignore[list-item]
            (gru, n) for n, _ in gru.named_parameters() if n.startswith("weight")
        ]

    return Subject(
        package,
        monitoring.load_model(package),
        windows,
        len(windows),
        64,
        300,
        run,
        lambda out: {
            "auroc": round(
                auroc(labels, out[:, monitoring.HORIZONS.index(monitoring.HORIZON_HOURS)]), 4
            )
        },
        onnx,
        prunable,
    )


def imaging_subject() -> Subject:
    from medstream.imaging import model as imaging  # noqa: PLC0415

    package = latest(ROOT / "models", imaging.NAME)
    inputs, targets = imaging.dataset(600, 20261128)
    classifier = imaging.Classifier(package, torch.device("cpu"))

    def run(model: nn.Module, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(model(torch.from_numpy(batch))).numpy()

    def onnx(model: nn.Module, folder: Path) -> Predict:
        import onnxruntime  # noqa: PLC0415

        imaging.export_onnx(model, folder)
        session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )
        return lambda batch: 1 / (1 + np.exp(-session.run(None, {"film": batch})[0]))

    def quality(out: np.ndarray) -> dict[str, float]:
        return {"auroc": imaging.evaluate(targets, out)["macro_auroc"]}

    return Subject(
        package,
        classifier.model,
        inputs,
        len(inputs),
        16,
        100,
        run,
        quality,
        onnx,
        _linear_weights,
        explained=classifier.predict,
    )


def notes_subject() -> Subject:
    from medstream.notes import model as notes  # noqa: PLC0415
    from medstream.notes.generator import reports  # noqa: PLC0415

    package = latest(ROOT / "models", notes.NAME)
    items = reports(300, 20261128, heldout=True)
    texts = [r.text for r in items]
    labeller = notes.Labeller(package, torch.device("cpu"))
    vocabulary, temperature = labeller.vocabulary, labeller.temperature

    def run(model: nn.Module, batch: list[str]) -> np.ndarray:
        return notes.report_scores(model, batch, vocabulary, temperature)

    def onnx(model: nn.Module, folder: Path) -> Predict:
        import onnxruntime  # noqa: PLC0415

        notes.export_onnx(model, folder)  # type: ignore[arg-type]
        session = onnxruntime.InferenceSession(
            str(folder / "model.onnx"), providers=["CPUExecutionProvider"]
        )

        def predict(batch: list[str]) -> np.ndarray:
            read, found = notes.chunks(batch, vocabulary)
            logits = np.zeros((len(found), len(notes.MENTION_CLASSES)), np.float32)
            for chosen, mentions in notes.batches(read, found, 32):
                if not mentions:
                    continue
                rows = {c: r for r, c in enumerate(chosen)}
                tensors = notes.pad([read[c] for c in chosen], [found[m] for m in mentions], rows)
                names = ("input_ids", "attention_mask", "token_types", "spans")
                feed = {name: t.numpy() for name, t in zip(names, tensors, strict=True)}
                logits[mentions] = session.run(None, feed)[0]
            return notes.aggregate(len(batch), found, notes.softmax(logits, temperature))

        return predict

    def quality(out: np.ndarray) -> dict[str, float]:
        scores = notes.evaluate(items, out)
        return {"auroc": scores["macro_auroc_present"], "macro_f1": scores["macro_f1"]}

    return Subject(
        package,
        labeller.model,
        texts,
        len(texts),
        32,
        40,
        run,
        quality,
        onnx,
        lambda m: _linear_weights(m.encoder.encoder),  # type: ignore[union-attr]
        explained=labeller.predict,
    )


SUBJECTS = {"monitoring": monitoring_subject, "imaging": imaging_subject, "notes": notes_subject}


def pruned(subject: Subject, amount: float) -> nn.Module:
    """L1 unstructured pruning of the subject's weights, made permanent."""
    clone = copy.deepcopy(subject.model)
    for module, name in subject.prunable(clone):
        prune.l1_unstructured(module, name=name, amount=amount)
        prune.remove(module, name)
    return clone


def variants(subject: Subject) -> dict[str, Predict | str]:
    from medstream.inference import quantise_int8  # noqa: PLC0415

    out: dict[str, Predict | str] = {}

    def with_model(model: nn.Module) -> Predict:
        model.eval()
        return lambda batch: subject.run(model, batch)

    out["fp32"] = with_model(subject.model)
    quantised = quantise_int8(copy.deepcopy(subject.model))
    if hasattr(subject.model, "gru"):
        quantised = torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(subject.model), {nn.GRU, nn.Linear}, dtype=torch.qint8
        )
    out["int8_dynamic"] = with_model(quantised)
    out["pruned_30pct"] = with_model(pruned(subject, 0.3))
    try:
        out["onnxruntime"] = subject.onnx(
            subject.model, Path(tempfile.mkdtemp(prefix="medstream-onnx-"))
        )
    except Exception as exc:  # noqa: BLE001  (report why, do not fail the benchmark)
        out["onnxruntime"] = f"unavailable: {type(exc).__name__}: {str(exc)[:160]}"
    return out


def timings(subject: Subject, predict: Predict) -> tuple[list[float], list[float], float]:
    """Per-call latencies at batch 1 and at the worker's batch size, and the batched
    throughput (items/s)."""
    single = []
    for i in range(subject.single_calls):
        started = time.perf_counter()
        predict(subject.inputs[i : i + 1])
        single.append(time.perf_counter() - started)
    batched = []
    started_all = time.perf_counter()
    for start in range(0, subject.count, subject.batch):
        started = time.perf_counter()
        predict(subject.inputs[start : start + subject.batch])
        batched.append(time.perf_counter() - started)
    return single, batched, subject.count / (time.perf_counter() - started_all)


def measure(name: str) -> dict[str, Any]:
    subject = SUBJECTS[name]()
    candidates = variants(subject)
    runnable = {k: v for k, v in candidates.items() if not isinstance(v, str)}
    quality: dict[str, dict[str, float]] = {}
    for variant, predict in runnable.items():
        outputs = [
            predict(subject.inputs[s : s + subject.batch])
            for s in range(0, subject.count, subject.batch)
        ]
        quality[variant] = subject.quality(np.concatenate(outputs))
    if subject.explained is not None:
        runnable["fp32_explained"] = subject.explained  # type: ignore[assignment]
        quality["fp32_explained"] = quality["fp32"]
    rounds: dict[str, list[tuple[list[float], list[float], float]]] = {v: [] for v in runnable}
    for number in range(ROUNDS):  # alternate, so noise hits every variant alike
        print(f"{name}: round {number + 1}/{ROUNDS}", file=sys.stderr, flush=True)
        for variant, predict in runnable.items():
            rounds[variant].append(timings(subject, predict))
    results: dict[str, Any] = {}
    for variant, runs in rounds.items():
        single = [x for run in runs for x in run[0]]
        batched = [x for run in runs for x in run[1]]
        results[variant] = {
            **quality[variant],
            "batch1_per_s": round(1 / statistics.median(single), 1),
            "batch1_p99_ms": round(float(np.percentile(single, 99)) * 1000, 3),
            f"batch{subject.batch}_per_s": round(statistics.median(run[2] for run in runs), 1),
            f"batch{subject.batch}_p99_ms": round(float(np.percentile(batched, 99)) * 1000, 3),
        }
    key = f"batch{subject.batch}_per_s"
    fp32 = results["fp32"]
    for entry in results.values():
        entry["speedup_batched_vs_fp32"] = round(entry[key] / fp32[key], 2)
        entry["auroc_loss_vs_fp32"] = round(fp32["auroc"] - entry["auroc"], 4)
    eligible = [
        n
        for n, e in results.items()
        if e["auroc_loss_vs_fp32"] <= MAX_AUROC_LOSS and n != "fp32_explained"
    ]
    explained: dict[str, Any] = {}
    if "fp32_explained" in results:
        # An explained result needs gradients, which int8 and ONNX Runtime lack: the
        # alternative to the fused pass is a fast forward plus the fused pass anyway.
        fused = results["fp32_explained"][key]
        fastest = max(eligible, key=lambda n: results[n][key])
        split = 1 / (1 / results[fastest][key] + 1 / fused)
        explained = {
            "fused_fp32_forward_backward_per_s": fused,
            f"{fastest}_forward_plus_explanation_per_s": round(split, 1),
            "worker_default": "fused fp32" if fused >= split else fastest,
        }
    return {
        "model": f"{subject.package.name} {subject.package.version} "
        f"({subject.package.checksum[:12]})",
        "held_out_items": subject.count,
        "batch": subject.batch,
        "variants": results,
        "unavailable": {k: v for k, v in candidates.items() if isinstance(v, str)},
        "fastest_within_0.01_auroc": max(eligible, key=lambda n: results[n][key]),
        "batching_gain_fp32": round(fp32[key] / fp32["batch1_per_s"], 1),
        "explained_results": explained,
    }


def main() -> None:
    torch.manual_seed(0)
    names = sys.argv[1:] or list(SUBJECTS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in names:
        report = {
            "date": datetime.now(UTC).date().isoformat(),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch "
            f"{torch.__version__}, {torch.get_num_threads()} threads",
            **measure(name),
        }
        path = RESULTS / f"models-{name}-efficiency.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
