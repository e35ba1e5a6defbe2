"""The deterioration model: a GRU over a patient's recent observations, giving the risk
of deterioration (unplanned ICU transfer) within the next 12 hours.

Inputs are scaled by fixed clinical reference values, not by training-set statistics,
so the model does not depend on one data source's distribution. Every vital has a
missing-value mask, and the time since the previous observation is an input, because
charting frequency itself carries signal. Explanations are Captum Integrated Gradients,
summed per vital over the window.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.clinical import FAHRENHEIT_UNITS, Vital
from medstream.models.metrics import auprc, auroc
from medstream.models.package import ModelPackage, write_manifest
from medstream.monitoring.news2 import Consciousness, Observations, news2
from medstream.monitoring.simulator import SimulatedPatient, simulate

NAME = "monitoring"
HORIZON_HOURS = 12
WINDOW = 12
# (vital, field, reference centre, reference scale): clinical normals, not data stats.
SCALED = (
    (Vital.RESPIRATORY_RATE, "respiratory_rate", 16.0, 4.0),
    (Vital.SPO2, "spo2", 96.0, 3.0),
    (Vital.SYSTOLIC_BP, "systolic_bp", 125.0, 20.0),
    (Vital.HEART_RATE, "heart_rate", 80.0, 15.0),
    (Vital.TEMPERATURE, "temperature", 36.9, 0.6),
)
# Feature index -> the vital it belongs to, for per-vital explanations.
FEATURES: list[tuple[str, Vital | None]] = (
    [(f"{f}_z", v) for v, f, _, _ in SCALED]
    + [(f"{f}_missing", v) for v, f, _, _ in SCALED]
    + [
        ("on_oxygen", Vital.SUPPLEMENTAL_OXYGEN),
        ("consciousness", Vital.CONSCIOUSNESS),
        ("consciousness_missing", Vital.CONSCIOUSNESS),
        ("hours_since_previous", None),
        ("news2", None),
        ("present", None),
    ]
)


def step_features(obs: Observations, hours_since_previous: float) -> list[float]:
    """The model's inputs for one observation set."""
    values, masks = [], []
    for _, field_name, centre, scale in SCALED:
        value = getattr(obs, field_name)
        values.append(0.0 if value is None else float(np.clip((value - centre) / scale, -6, 6)))
        masks.append(1.0 if value is None else 0.0)
    level = {
        None: 0.0,
        Consciousness.ALERT: 0.0,
        Consciousness.CONFUSION: 1 / 3,
        Consciousness.VOICE: 2 / 3,
    }.get(obs.consciousness, 1.0)
    return [
        *values,
        *masks,
        float(obs.on_oxygen),
        level,
        float(obs.consciousness is None),
        min(hours_since_previous, 12.0) / 4.0,
        news2(obs).total / 10.0,
        1.0,
    ]


def window(times: Sequence[float], observations: Sequence[Observations], end: int) -> np.ndarray:
    """The last WINDOW observations up to index ``end`` (inclusive), left-padded."""
    start = max(0, end - WINDOW + 1)
    rows = [
        step_features(observations[i], times[i] - times[i - 1] if i > 0 else 4.0)
        for i in range(start, end + 1)
    ]
    padding = [[0.0] * len(FEATURES)] * (WINDOW - len(rows))
    return np.asarray(padding + rows, dtype=np.float32)


def examples(patients: Sequence[SimulatedPatient]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(windows, labels, NEWS2 at the scoring time) for every observation of every stay."""
    xs, ys, baseline = [], [], []
    for patient in patients:
        for index, t in enumerate(patient.times):
            xs.append(window(patient.times, patient.observations, index))
            ys.append(
                patient.event_hour is not None and 0 < patient.event_hour - t <= HORIZON_HOURS
            )
            baseline.append(news2(patient.observations[index]).total)
    return np.stack(xs), np.asarray(ys, dtype=np.float32), np.asarray(baseline, dtype=np.float32)


class DeteriorationGRU(nn.Module):
    """Two GRU layers over the window; the last hidden state gives the risk logit."""

    def __init__(self, features: int = len(FEATURES), hidden: int = 64) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.gru(x)
        logits: torch.Tensor = self.head(output[:, -1]).squeeze(-1)
        return logits


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights; the seed makes them reproducible."""

    seed: int = 7
    train_patients: int = 4000
    validation_patients: int = 800
    test_patients: int = 2000
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 2e-3
    positive_weight: float = 4.0  # class imbalance: ~7% positive windows


def train(
    config: TrainingConfig, progress: Callable[[str], None] = lambda _: None
) -> tuple[DeteriorationGRU, dict[str, Any]]:
    """Simulate, train with class weighting, select on validation AUROC, and score the
    held-out patients (a different seed, never seen in training) against NEWS2."""
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    x_train, y_train, _ = examples(simulate(config.train_patients, config.seed))
    x_val, y_val, _ = examples(simulate(config.validation_patients, config.seed + 1000))
    x_test, y_test, news2_test = examples(simulate(config.test_patients, config.seed + 2000))
    progress(f"simulated {len(x_train)} training windows ({y_train.mean():.1%} positive)")
    model = DeteriorationGRU()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(config.positive_weight))
    generator = torch.Generator().manual_seed(config.seed)
    inputs, targets = torch.from_numpy(x_train), torch.from_numpy(y_train)
    best_auroc, best_state = -math.inf, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for batch in torch.split(order, config.batch_size):
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        val_auroc = auroc(y_val, predict_logits(model, x_val))
        progress(f"epoch {epoch}/{config.epochs}: validation AUROC {val_auroc:.4f}")
        if val_auroc > best_auroc:
            best_auroc = val_auroc
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None  # noqa: S101  (epochs >= 1)
    model.load_state_dict(best_state)
    scores = predict_logits(model, x_test)
    metrics = {
        "horizon_hours": HORIZON_HOURS,
        "held_out": {
            "patients": config.test_patients,
            "windows": len(y_test),
            "prevalence": round(float(y_test.mean()), 4),
            "model_auroc": round(auroc(y_test, scores), 4),
            "model_auprc": round(auprc(y_test, scores), 4),
            "news2_auroc": round(auroc(y_test, news2_test), 4),
            "news2_auprc": round(auprc(y_test, news2_test), 4),
        },
        "validation_auroc": round(best_auroc, 4),
        "training_seconds": round(time.perf_counter() - started, 1),
        "config": config.__dict__,
    }
    return model, metrics


def predict_logits(model: DeteriorationGRU, windows: np.ndarray) -> np.ndarray:
    """Logits for a batch of windows, without gradients."""
    model.eval()
    with torch.no_grad():
        return torch.cat(
            [
                model(torch.from_numpy(chunk))
                for chunk in np.array_split(windows, max(1, len(windows) // 4096))
            ]
        ).numpy()


def explain(model: DeteriorationGRU, window_array: np.ndarray) -> dict[str, float]:
    """``explain_batch`` for one window."""
    return explain_batch(model, window_array[None])[0]


def explain_batch(model: DeteriorationGRU, windows: np.ndarray) -> list[dict[str, float]]:
    """Integrated Gradients from an all-missing baseline, summed per vital and normalised
    so the absolute weights add up to 1; the sign says whether a vital raised the risk.
    One call attributes a whole batch."""
    from captum.attr import IntegratedGradients  # noqa: PLC0415  (only when explaining)

    model.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    baseline = torch.zeros_like(inputs)
    baseline[..., len(SCALED) : 2 * len(SCALED)] = 1.0  # every vital missing
    attributions = IntegratedGradients(model).attribute(
        inputs, baselines=baseline, n_steps=32, internal_batch_size=max(32, len(inputs) * 8)
    )
    per_feature = attributions.sum(dim=1).detach().numpy()  # (batch, feature)
    results = []
    for row in per_feature:
        weights: dict[str, float] = {}
        for (_, vital), value in zip(FEATURES, row, strict=True):
            if vital is not None:
                weights[vital.value] = weights.get(vital.value, 0.0) + float(value)
        total = sum(abs(v) for v in weights.values()) or 1.0
        results.append({k: round(v / total, 4) for k, v in sorted(weights.items())})
    return results


def save_package(
    model: DeteriorationGRU, metrics: dict[str, Any], registry: Path, version: str
) -> ModelPackage:
    """Write and seal the model package."""
    folder = registry / NAME / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "labels.json").write_text(
        json.dumps(
            {"output": "probability of deterioration (unplanned ICU transfer) within 12 hours"},
            indent=2,
        )
        + "\n"
    )
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {
                "window": WINDOW,
                "horizon_hours": HORIZON_HOURS,
                "features": [name for name, _ in FEATURES],
                "scaling": {f: {"centre": c, "scale": s} for _, f, c, s in SCALED},
            },
            indent=2,
        )
        + "\n"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "card.md").write_text(model_card(metrics, version))
    export_onnx(model, folder)
    return write_manifest(folder, NAME, version, {"framework": f"torch {torch.__version__}"})


def export_onnx(model: DeteriorationGRU, folder: Path) -> None:
    """Write ``model.onnx``, with a dynamic batch axis, for ONNX Runtime."""
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, WINDOW, len(FEATURES)),),
        str(folder / "model.onnx"),
        input_names=["window"],
        output_names=["logit"],
        dynamic_axes={"window": {0: "batch"}},
        dynamo=False,
    )


class Scorer:
    """Risk logits for batches of windows: ONNX Runtime when the package has it (the
    fastest CPU path, bench/models; identical AUROC), else PyTorch."""

    def __init__(self, package: ModelPackage, model: DeteriorationGRU) -> None:
        self.model = model
        self.runtime = "torch"
        self._session: Any = None
        if (package.folder / "model.onnx").exists():
            import onnxruntime  # noqa: PLC0415

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(
                str(package.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
            self.runtime = "onnxruntime"

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """One logit per window."""
        if self._session is None:
            return predict_logits(self.model, windows)
        result: np.ndarray = self._session.run(None, {"window": windows.astype(np.float32)})[0]
        return result


def load_model(package: ModelPackage) -> DeteriorationGRU:
    """The GRU with the package's verified weights."""
    model = DeteriorationGRU()
    model.load_state_dict(torch.load(package.folder / "weights.pt", weights_only=True))
    model.eval()
    return model


def model_card(metrics: dict[str, Any], version: str) -> str:
    """The model card of a trained package."""
    held = metrics["held_out"]
    cfg = metrics["config"]
    return f"""# {NAME} {version}

**Not for clinical use.** A reference model trained only on synthetic data.

## Intended use
Ranks ward patients by the risk of deterioration (unplanned ICU transfer) within the
next {HORIZON_HOURS} hours, from their last {WINDOW} charted observation sets. It is
shown beside NEWS2, which is computed on every scoring and stays the clinical baseline.

## Model
Two-layer GRU (hidden 64) over per-observation features: five vitals scaled by fixed
clinical reference values, a missing mask per vital, supplemental oxygen, ACVPU level,
hours since the previous observation, and the NEWS2 total. Output: a logit; the
probability is its sigmoid.

## Training data
`medstream.monitoring.simulator`: {cfg["train_patients"]} synthetic ward stays (seed
{cfg["seed"]}): 80% stable (15% with chronic abnormal baselines), 12% sepsis-like and
8% respiratory-failure trajectories, with randomised onset, speed and shape, 4-hourly
charting that tightens as NEWS2 rises, missing values and artefacts. Class imbalance
(about 7% positive windows) is handled with a positive-class weight of
{cfg["positive_weight"]}; the epoch is chosen on {cfg["validation_patients"]}
validation stays.

## Held-out evaluation
{held["patients"]} stays from a seed never used in training ({held["windows"]} scoring
points, prevalence {held["prevalence"]:.1%}):

| | AUROC | AUPRC |
|---|---|---|
| this model | {held["model_auroc"]} | {held["model_auprc"]} |
| NEWS2 | {held["news2_auroc"]} | {held["news2_auprc"]} |

## Limitations
- Synthetic physiology only; real wards have other trajectories, charting habits and
  case mixes. Performance on real patients is unknown.
- The held-out patients come from the same simulator with other random draws, so this
  measures generalisation across patients, not across data sources.
- Trained in {metrics["training_seconds"]} s on CPU; reproducible with
  `medstream models train monitoring --seed {cfg["seed"]}`.
"""


def observation_sets(items: Sequence[dict[str, Any]]) -> tuple[list[float], list[Observations]]:
    """CONTRACT observations ({"time", "code", "value", "unit"}) grouped into charted
    sets by time, oldest first, with times in hours from the first set."""
    from medstream.clinical import VITAL_LOINC  # noqa: PLC0415

    grouped: dict[str, dict[str, Any]] = {}
    for item in items:
        vital = VITAL_LOINC.get(str(item.get("code")))
        if vital is None:
            continue
        value: Any = item.get("value")
        unit = str(item.get("unit") or "")
        when = _instant(item.get("time"))
        if when is None:
            continue
        fields = grouped.setdefault(when.isoformat(), {})
        if vital is Vital.CONSCIOUSNESS:
            letter = str(value).strip()[:1].upper()
            fields["consciousness"] = (
                Consciousness(letter) if letter in "ACVPU" and letter else None
            )
            continue
        number = _finite(value)
        if number is None:
            continue  # a coded value where a number belongs: no measurement to use
        if vital is Vital.SUPPLEMENTAL_OXYGEN:
            fields["on_oxygen"] = number > (21 if "%" in unit else 0)
        elif vital is Vital.TEMPERATURE and unit.lower() in FAHRENHEIT_UNITS:
            fields["temperature"] = (number - 32) * 5 / 9
        elif vital is not Vital.DIASTOLIC_BP:
            fields[
                {
                    Vital.RESPIRATORY_RATE: "respiratory_rate",
                    Vital.SPO2: "spo2",
                    Vital.SYSTOLIC_BP: "systolic_bp",
                    Vital.HEART_RATE: "heart_rate",
                    Vital.TEMPERATURE: "temperature",
                }[vital]
            ] = number
    ordered = sorted(grouped.items(), key=lambda kv: datetime.fromisoformat(kv[0]))
    if not ordered:
        return [], []
    first = datetime.fromisoformat(ordered[0][0])
    times = [(datetime.fromisoformat(t) - first).total_seconds() / 3600 for t, _ in ordered]
    return times, [Observations(**fields) for _, fields in ordered]


def _instant(value: object) -> datetime | None:
    """An observation time as an aware datetime (UTC if no zone); None if unreadable."""
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def coded(event_vitals: Sequence[Any]) -> list[dict[str, Any]]:
    """A VitalsEvent's vitals in the CONTRACT's observation form, for observation_sets."""
    return [
        {
            "time": vital.observed_at.isoformat(),
            "code": vital.loinc,
            "value": vital.value if vital.value is not None else vital.text,
            "unit": vital.unit or "",
        }
        for vital in event_vitals
    ]
