"""The deterioration model: a GRU-D-style recurrent network over the last 24 hours of a
patient's charting, giving the risk of deterioration within 6, 12 and 24 hours (the
CONTRACT's ``risk`` is the 12-hour one).

It reads physiology, not charting habits:
- The input is a fixed hourly grid over the last STEPS hours, whatever the charting
  frequency, so the number of rows is not an input. For each NEWS2 parameter and hour:
  the latest value (carried forward), whether it was measured in that hour (the mask),
  and how long ago it was measured (GRU-D's delta). A learned decay per parameter pulls
  an old carried value towards the clinical normal as it ages (GRU-D's input decay).
- Values are scaled by fixed clinical reference values, not by training-set statistics.
- The NEWS2 of the latest complete picture at each hour is an input too.
- It is trained on charting drawn independently of acuity (``simulator.chart``'s
  ``decoupled`` policy), thinned at random, so neither the masks nor the deltas carry
  the label.

Explanations are Captum Integrated Gradients from an all-missing baseline, summed per
vital over its value, mask and delta inputs; ``notes`` says which of the top drivers was
a carried-forward value, and how old, or missing.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.clinical import FAHRENHEIT_UNITS, Vital
from medstream.models.metrics import auprc, auroc
from medstream.models.package import ModelPackage, write_manifest
from medstream.monitoring.news2 import (
    DEFAULT_STALE_MINUTES,
    Consciousness,
    Observations,
    totals,
)
from medstream.monitoring.simulator import SimulatedPatient, simulate

NAME = "monitoring"
HORIZONS = (6, 12, 24)
HORIZON_HOURS = 12  # the CONTRACT's risk
STEPS = 24  # hourly steps the model reads
# (vital, field, reference centre, reference scale): clinical normals, not data stats.
PARAMETERS: tuple[tuple[Vital, str, float, float], ...] = (
    (Vital.RESPIRATORY_RATE, "respiratory_rate", 16.0, 4.0),
    (Vital.SPO2, "spo2", 96.0, 3.0),
    (Vital.SUPPLEMENTAL_OXYGEN, "on_oxygen", 0.0, 1.0),
    (Vital.SYSTOLIC_BP, "systolic_bp", 125.0, 20.0),
    (Vital.HEART_RATE, "heart_rate", 80.0, 15.0),
    (Vital.CONSCIOUSNESS, "consciousness", 0.0, 1.0),
    (Vital.TEMPERATURE, "temperature", 36.9, 0.6),
)
P = len(PARAMETERS)
LEVEL = {
    Consciousness.ALERT: 0.0,
    Consciousness.CONFUSION: 1 / 3,
    Consciousness.VOICE: 2 / 3,
    Consciousness.PAIN: 1.0,
    Consciousness.UNRESPONSIVE: 1.0,
}
# Feature index -> the vital it belongs to, for per-vital explanations.
FEATURES: list[tuple[str, Vital | None]] = (
    [(f"{f}_value", v) for v, f, _, _ in PARAMETERS]
    + [(f"{f}_measured", v) for v, f, _, _ in PARAMETERS]
    + [(f"{f}_hours_since", v) for v, f, _, _ in PARAMETERS]
    + [("news2", None), ("spo2_scale_2", Vital.SPO2)]
)
MAX_DELTA = 24.0


def _value(obs: Observations, field_name: str) -> float | None:
    value = getattr(obs, field_name)
    if value is None:
        return None
    if field_name == "consciousness":
        return LEVEL[value]
    return float(value)


def grid(
    times: Sequence[float],
    sets: Sequence[Observations],
    at: float,
    limits: dict[Vital, float] = DEFAULT_STALE_MINUTES,
) -> np.ndarray:
    """The model's input at hour ``at``: (STEPS, features), hour by hour up to ``at``,
    from the rows charted at or before it. Each hour's NEWS2 is that of the latest
    complete picture at its end (values within their staleness limits)."""
    ends = at - np.arange(STEPS - 1, -1, -1, dtype=np.float64)  # each step's end
    out = np.zeros((STEPS, len(FEATURES)), np.float32)
    raw: dict[Vital, np.ndarray] = {}
    for p, (vital, name, centre, scale) in enumerate(PARAMETERS):
        charted = [
            (t, v)
            for t, o in zip(times, sets, strict=True)
            if t <= at and (v := _value(o, name)) is not None
        ]
        if not charted:
            out[:, 2 * P + p] = 1.0
            raw[vital] = np.full(STEPS, np.nan)
            continue
        when = np.asarray([t for t, _ in charted])
        values = np.asarray([v for _, v in charted])
        last = np.searchsorted(when, ends, side="right") - 1
        seen = last >= 0
        delta = np.where(seen, ends - when[np.clip(last, 0, None)], MAX_DELTA)
        current = np.where(seen, values[np.clip(last, 0, None)], np.nan)
        out[:, p] = np.where(seen, np.clip((current - centre) / scale, -6, 6), 0.0)
        out[:, P + p] = (seen & (delta < 1.0)).astype(np.float32)
        out[:, 2 * P + p] = np.minimum(delta, MAX_DELTA) / MAX_DELTA
        raw[vital] = np.where(seen & (delta * 60 <= limits[vital]), current, np.nan)
    scale_2 = any(o.spo2_scale_2 for t, o in zip(times, sets, strict=True) if t <= at)
    oxygen = raw.pop(Vital.SUPPLEMENTAL_OXYGEN)
    out[:, 3 * P] = np.asarray(totals(raw, oxygen, scale_2), np.float32) / 20.0
    out[:, 3 * P + 1] = float(scale_2)
    return out


def window(times: Sequence[float], observations: Sequence[Observations], end: int) -> np.ndarray:
    """The model's input scored at row ``end`` (the worker scores at the last row)."""
    return grid(times[: end + 1], observations[: end + 1], times[end])


@dataclass(frozen=True)
class Examples:
    """Scoring points: inputs, labels per horizon, NEWS2 on the latest complete picture,
    and what a charting-only baseline sees (rows in the last 24 h, hours since the last
    row)."""

    x: np.ndarray
    y: np.ndarray  # (N, len(HORIZONS))
    news2: np.ndarray
    rows_24h: np.ndarray
    hours_since_row: np.ndarray


def scoring_points(
    patients: Sequence[SimulatedPatient],
    at: str | Callable[[SimulatedPatient], Sequence[float]] = "rows",
    every: float = 2.0,
) -> Examples:
    """Every charted row of every stay (``at="rows"``, as the worker scores), or every
    ``every`` hours of clock time (``at="clock"``, so that each stay is scored the same
    number of times however often it was charted), or at the hours a function of the
    stay gives. Only moments before the stay's
    event count: once a patient has deteriorated, there is nothing left to predict."""
    xs, ys, base, counts, since = [], [], [], [], []
    for patient in patients:
        times = patient.times
        if callable(at):
            moments = list(at(patient))
        elif at == "rows":
            moments = list(times)
        else:
            moments = [
                h for h in np.arange(every, patient.end_hour, every) if times and times[0] <= h
            ]
        for moment in moments:
            if patient.event_hour is not None and moment >= patient.event_hour:
                break  # after the event the question is answered: not a scoring point
            upto = [i for i, t in enumerate(times) if t <= moment]
            if not upto:
                continue
            last = upto[-1]
            xs.append(grid(times[: last + 1], patient.observations[: last + 1], moment))
            event = patient.event_hour
            ys.append([event is not None and 0 < event - moment <= h for h in HORIZONS])
            base.append(round(float(xs[-1][-1, 3 * P]) * 20))
            counts.append(sum(1 for t in times if moment - 24 < t <= moment))
            since.append(moment - times[last])
    return Examples(
        np.stack(xs) if xs else np.zeros((0, STEPS, len(FEATURES)), np.float32),
        np.asarray(ys, np.float32).reshape(-1, len(HORIZONS)),
        np.asarray(base, np.float32),
        np.asarray(counts, np.float32),
        np.asarray(since, np.float32),
    )


def examples(patients: Sequence[SimulatedPatient]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, 12-hour labels, NEWS2) at every charted row: the shape benches use."""
    found = scoring_points(patients)
    return found.x, found.y[:, HORIZONS.index(HORIZON_HOURS)], found.news2


def thin(patient: SimulatedPatient, rng: np.random.Generator) -> SimulatedPatient:
    """Augmentation: the same stay with rows dropped and parameters blanked at random."""
    keep_row = rng.uniform(0.5, 1.0)
    blank = rng.uniform(0.0, 0.3)
    times: list[float] = []
    sets: list[Observations] = []
    for t, obs in zip(patient.times, patient.observations, strict=True):
        if rng.random() > keep_row and times:
            continue
        changes = {
            name: None
            for _, name, _, _ in PARAMETERS
            if getattr(obs, name) is not None and rng.random() < blank
        }
        times.append(t)
        sets.append(Observations(**{**obs.__dict__, **changes}))
    thinned = SimulatedPatient(
        patient.patient_id, patient.trajectory, patient.event_hour, times, sets
    )
    thinned.end_hour = patient.end_hour
    return thinned


class DeteriorationGRU(nn.Module):
    """GRU-D-style input decay, then two GRU layers over the hourly grid; one logit per
    horizon from the last hidden state."""

    calibration_scale: torch.Tensor
    calibration_shift: torch.Tensor

    def __init__(self, features: int = len(FEATURES), hidden: int = 64) -> None:
        super().__init__()
        self.decay = nn.Parameter(torch.zeros(P))  # per parameter: how fast a value ages
        self.decay_bias = nn.Parameter(torch.zeros(P))
        self.gru = nn.GRU(features, hidden, num_layers=2, batch_first=True, dropout=0.1)
        self.head = nn.Linear(hidden, len(HORIZONS))
        # Platt scaling per horizon, fitted on validation stays after training: the
        # positive-class weight inflates raw probabilities, so they are recalibrated.
        self.register_buffer("calibration_scale", torch.ones(len(HORIZONS)))
        self.register_buffer("calibration_shift", torch.zeros(len(HORIZONS)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values, measured, since = x[..., :P], x[..., P : 2 * P], x[..., 2 * P : 3 * P]
        gamma = torch.exp(-torch.relu(self.decay * since * MAX_DELTA + self.decay_bias))
        decayed = measured * values + (1 - measured) * gamma * values
        inputs = torch.cat([decayed, x[..., P:]], dim=-1)
        output, _ = self.gru(inputs)
        logits: torch.Tensor = self.head(output[:, -1])
        return logits * self.calibration_scale + self.calibration_shift


def calibrate(model: DeteriorationGRU, points: Examples) -> None:
    """Fit each horizon's Platt scaling (a scale and shift of the logit) on ``points``
    by maximum likelihood; ranking, and so AUROC, is unchanged."""
    model.calibration_scale.fill_(1.0)
    model.calibration_shift.fill_(0.0)
    raw = torch.from_numpy(predict_logits(model, points.x)).double()
    truth = torch.from_numpy(points.y).double()
    scale = torch.ones(len(HORIZONS), dtype=torch.float64, requires_grad=True)
    shift = torch.zeros(len(HORIZONS), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([scale, shift], max_iter=200)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = nn.functional.binary_cross_entropy_with_logits(raw * scale + shift, truth)
        value.backward()  # type: ignore[no-untyped-call]
        return value

    optimiser.step(loss)  # type: ignore[no-untyped-call]
    with torch.no_grad():
        model.calibration_scale.copy_(scale.float())
        model.calibration_shift.copy_(shift.float())


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights; the seed makes them reproducible."""

    seed: int = 7
    train_patients: int = 3000
    validation_patients: int = 600
    test_patients: int = 1500
    epochs: int = 8
    batch_size: int = 256
    learning_rate: float = 2e-3
    positive_weight: float = 3.0  # class imbalance


def _training_stays(config: TrainingConfig) -> list[SimulatedPatient]:
    """Decoupled charting, plus a thinned copy of each stay."""
    rng = np.random.default_rng(config.seed + 17)
    stays = simulate(config.train_patients, config.seed, policy="decoupled")
    return stays + [thin(p, rng) for p in stays]


def train(
    config: TrainingConfig, progress: Callable[[str], None] = lambda _: None
) -> tuple[DeteriorationGRU, dict[str, Any]]:
    """Simulate with charting independent of acuity, train with class weighting on all
    three horizons, select on validation AUROC (12 h), and score held-out stays (a seed
    never used in training) against NEWS2 under each charting policy."""
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    progress("simulating training stays")
    train_set = scoring_points(_training_stays(config))
    validation = scoring_points(simulate(config.validation_patients, config.seed + 1000))
    progress(
        f"{len(train_set.y)} training points ({train_set.y[:, 1].mean():.1%} positive at 12 h)"
    )
    model = DeteriorationGRU()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(config.positive_weight))
    generator = torch.Generator().manual_seed(config.seed)
    inputs, targets = torch.from_numpy(train_set.x), torch.from_numpy(train_set.y)
    best_auroc, best_state = -math.inf, None
    primary = HORIZONS.index(HORIZON_HOURS)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for batch in torch.split(order, config.batch_size):
            optimiser.zero_grad()
            loss = loss_fn(model(inputs[batch]), targets[batch])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
        val_auroc = auroc(validation.y[:, primary], predict_logits(model, validation.x)[:, primary])
        progress(f"epoch {epoch}/{config.epochs}: validation AUROC (12 h) {val_auroc:.4f}")
        if val_auroc > best_auroc:
            best_auroc = val_auroc
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None  # noqa: S101  (epochs >= 1)
    model.load_state_dict(best_state)
    progress("calibrating on the validation stays (Platt scaling per horizon)")
    calibrate(model, validation)
    held_out = {}
    for policy in ("decoupled", "inverse", "coupled"):
        stays = simulate(config.test_patients, config.seed + 2000, policy=policy)
        held_out[policy] = compare(model, scoring_points(stays, at="clock"))
        progress(f"held out, {policy} charting: {held_out[policy]['12h']}")
    metrics = {
        "horizons_hours": list(HORIZONS),
        "held_out": held_out,
        "validation_auroc_12h": round(best_auroc, 4),
        "training_points": len(train_set.y),
        "training_seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    return model, metrics


def compare(model: nn.Module, points: Examples) -> dict[str, Any]:
    """The model against NEWS2 and the charting-only baselines at each horizon: AUROC,
    AUPRC, and the model's calibration (expected calibration error, Brier score)."""
    logits = predict_logits(model, points.x)
    out: dict[str, Any] = {"points": len(points.y)}
    for k, hours in enumerate(HORIZONS):
        y = points.y[:, k]
        risk = 1 / (1 + np.exp(-logits[:, k]))
        out[f"{hours}h"] = {
            "prevalence": round(float(y.mean()), 4),
            "model_auroc": round(auroc(y, risk), 4),
            "model_auprc": round(auprc(y, risk), 4),
            "news2_auroc": round(auroc(y, points.news2), 4),
            "news2_auprc": round(auprc(y, points.news2), 4),
            "rows_24h_auroc": round(auroc(y, points.rows_24h), 4),
            "hours_since_row_auroc": round(auroc(y, -points.hours_since_row), 4),
            "model_ece": round(_ece(y, risk), 4),
            "model_brier": round(float(np.mean((risk - y) ** 2)), 4),
        }
    return out


def _ece(truth: np.ndarray, probability: np.ndarray, bins: int = 10) -> float:
    which = np.clip((probability * bins).astype(int), 0, bins - 1)
    return float(
        sum(
            (which == b).mean() * abs(probability[which == b].mean() - truth[which == b].mean())
            for b in range(bins)
            if (which == b).any()
        )
    )


def predict_logits(model: nn.Module, windows: np.ndarray) -> np.ndarray:
    """Logits (batch, horizons) for a batch of inputs, without gradients."""
    model.eval()
    if not len(windows):
        return np.zeros((0, len(HORIZONS)), np.float32)
    with torch.no_grad():
        return torch.cat(
            [
                model(torch.from_numpy(np.ascontiguousarray(chunk)))
                for chunk in np.array_split(windows, max(1, len(windows) // 4096))
            ]
        ).numpy()


class _Primary(nn.Module):
    """The 12-hour logit alone: what the explanation explains."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(x)[:, HORIZONS.index(HORIZON_HOURS)]
        return logits


def baseline_input(shape: tuple[int, ...]) -> torch.Tensor:
    """The explanation's reference: nothing ever measured."""
    baseline = torch.zeros(shape)
    baseline[..., 2 * P : 3 * P] = 1.0  # measured MAX_DELTA hours ago or never
    return baseline


def explain(model: nn.Module, window_array: np.ndarray) -> dict[str, float]:
    """``explain_batch`` for one input."""
    return explain_batch(model, window_array[None])[0]


def explain_batch(model: nn.Module, windows: np.ndarray) -> list[dict[str, float]]:
    """Integrated Gradients of the 12-hour logit from an all-missing baseline, summed
    per vital (its value, measured and hours-since inputs) and normalised so the
    absolute weights add up to 1; the sign says whether a vital raised the risk. One
    call attributes a whole batch."""
    from captum.attr import IntegratedGradients  # noqa: PLC0415  (only when explaining)

    model.eval()
    inputs = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32))
    attributions = IntegratedGradients(_Primary(model)).attribute(
        inputs,
        baselines=baseline_input(tuple(inputs.shape)),
        n_steps=32,
        internal_batch_size=max(32, len(inputs) * 8),
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


def explanation_notes(
    explanation: dict[str, float], ages: dict[Vital, float], threshold: float = 0.1
) -> dict[str, str]:
    """For each vital that drove the score (|weight| >= ``threshold``): whether its
    value was carried forward (and how old it is) or missing, at the scoring time."""
    notes = {}
    for name, weight in explanation.items():
        if abs(weight) < threshold:
            continue
        vital = Vital(name)
        if vital not in ages:
            notes[name] = "missing"
        elif ages[vital] > 0:
            notes[name] = f"carried forward, {ages[vital]:g} minutes old"
    return notes


def save_package(
    model: DeteriorationGRU, metrics: dict[str, Any], registry: Path, version: str
) -> ModelPackage:
    """Write and seal the model package."""
    folder = registry / NAME / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "weights.pt")
    (folder / "labels.json").write_text(
        json.dumps(
            {
                "outputs": [f"deterioration within {h} hours" for h in HORIZONS],
                "deterioration": "true NEWS2 reaching 7, an ICU transfer or death",
                "risk": f"the {HORIZON_HOURS}-hour output",
            },
            indent=2,
        )
        + "\n"
    )
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {
                "steps_hours": STEPS,
                "horizons_hours": list(HORIZONS),
                "features": [name for name, _ in FEATURES],
                "scaling": {f: {"centre": c, "scale": s} for _, f, c, s in PARAMETERS},
                "news2_stale_minutes": {v.value: m for v, m in DEFAULT_STALE_MINUTES.items()},
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
        (torch.zeros(1, STEPS, len(FEATURES)),),
        str(folder / "model.onnx"),
        input_names=["window"],
        output_names=["logits"],
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
            # As many threads as torch has here (the services' MEDSTREAM_MODEL_THREADS).
            options.intra_op_num_threads = torch.get_num_threads()
            options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(
                str(package.folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
            self.runtime = "onnxruntime"

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Logits (batch, horizons)."""
        if self._session is None:
            return predict_logits(self.model, windows)
        result: np.ndarray = self._session.run(None, {"window": windows.astype(np.float32)})[0]
        return result


def risk(logits: np.ndarray) -> np.ndarray:
    """The CONTRACT's risk (the 12-hour probability) from logits (batch, horizons)."""
    return np.asarray(1 / (1 + np.exp(-logits[:, HORIZONS.index(HORIZON_HOURS)])))


def load_model(package: ModelPackage) -> DeteriorationGRU:
    """The GRU with the package's verified weights."""
    model = DeteriorationGRU()
    model.load_state_dict(torch.load(package.folder / "weights.pt", weights_only=True))
    model.eval()
    return model


def model_card(metrics: dict[str, Any], version: str) -> str:
    """The model card of a trained package. The confounding bench
    (bench/models/monitoring) adds the re-charting test; its results are in the README."""
    cfg = metrics["config"]
    rows = []
    for policy, scores in metrics["held_out"].items():
        for hours in HORIZONS:
            m = scores[f"{hours}h"]
            rows.append(
                f"| {policy} | {hours} h | {m['prevalence']:.1%} | {m['model_auroc']} | "
                f"{m['news2_auroc']} | {m['model_auprc']} | {m['news2_auprc']} | "
                f"{m['rows_24h_auroc']} | {m['model_ece']} |"
            )
    table = "\n".join(rows)
    return f"""# {NAME} {version}

**Not for clinical use.** A reference model trained only on synthetic data.

## Intended use
Ranks ward patients by the risk of deterioration (the physiology reaching NEWS2 7, an
unplanned ICU transfer, or death) within 6, 12 and 24 hours; `risk` is the 12-hour
output. It is shown beside NEWS2 on the latest complete picture, which stays the
clinical baseline.

## Model
GRU-D-style: an hourly grid over the last {STEPS} hours, whatever the charting
frequency. Per NEWS2 parameter and hour: the latest value carried forward (scaled by
fixed clinical reference values), whether it was measured that hour, and the hours since
it was; a learned decay pulls an old value towards normal. Also the NEWS2 of the latest
complete picture each hour and the SpO2 scale. Two GRU layers (hidden 64), one logit
per horizon. The number of rows is not an input.

## Training data
`medstream.monitoring.simulator`: {cfg["train_patients"]} synthetic ward stays (seed
{cfg["seed"]}), each also thinned at random (rows dropped, parameters blanked), charted by
the `decoupled` policy: a schedule drawn per patient with no regard to acuity (hourly to
6-hourly or irregular, partial rows, long gaps). Physiology: 80% stable (15% with chronic
abnormal baselines), 12% sepsis-like and 8% respiratory-failure trajectories with
randomised onset, speed and shape. {metrics["training_points"]} scoring points, one per
charted row. Class imbalance is handled with a positive-class weight of
{cfg["positive_weight"]}; the epoch is chosen on {cfg["validation_patients"]} validation
stays (12-hour AUROC), and each horizon's probability is then recalibrated on them
(Platt scaling), because the class weight inflates raw probabilities.

## Held-out evaluation
{cfg["test_patients"]} stays from a seed never used in training, scored every 2 hours of
clock time (so each stay counts the same however often it was charted), under three
charting policies: decoupled; inverse (sicker patients charted less); coupled (sicker
patients charted more, the confounded world). "rows" is the charting-only baseline: the
number of rows in the last 24 hours.

| charting | hours | prevalence | AUROC | NEWS2 | AUPRC | NEWS2 AUPRC | rows | ECE |
|---|---|---|---|---|---|---|---|---|
{table}

## Limitations
- Synthetic physiology only; real wards have other trajectories, charting habits and
  case mixes. Performance on real patients is unknown.
- The held-out patients come from the same simulator with other random draws, so this
  measures generalisation across patients and charting, not across data sources.
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
            fields["consciousness"] = acvpu(value)
            continue
        number = _finite(value)
        if number is None:
            continue  # a coded value where a number belongs: no measurement to use
        if item.get("spo2_scale") == 2:  # a clinician set a target of 88-92%
            fields["spo2_scale_2"] = True
        if vital is Vital.SUPPLEMENTAL_OXYGEN:
            fields["on_oxygen"] = _on_oxygen(str(item.get("code")), number, unit)
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


def _on_oxygen(code: str, number: float, unit: str) -> bool:
    """Inhaled oxygen concentration (3150-0) above air, as a percentage or a fraction, or
    an inhaled oxygen flow rate (3151-8) above zero."""
    if code == "3151-8":
        return number > 0
    if "%" in unit or number > 1:
        return number > 21
    return number > 0.21


_ACVPU_WORDS = (  # checked in this order: "new confusion" before anything else
    ("confus", Consciousness.CONFUSION),
    ("unrespons", Consciousness.UNRESPONSIVE),
    ("voice", Consciousness.VOICE),
    ("verbal", Consciousness.VOICE),
    ("pain", Consciousness.PAIN),
    ("alert", Consciousness.ALERT),
)


def acvpu(value: object) -> Consciousness | None:
    """An ACVPU answer as charted: the letter, or the words ("Alert", "New confusion",
    "Responds to voice", "Responds to pain", "Unresponsive"); None if unreadable."""
    text = str(value).strip()
    if len(text) == 1 and text.upper() in "ACVPU":
        return Consciousness(text.upper())
    lowered = text.lower()
    for word, level in _ACVPU_WORDS:
        if word in lowered:
            return level
    return None


def row_at(items: Sequence[dict[str, Any]], times: Sequence[float], moment: datetime) -> int:
    """The index of the last charted set at or before ``moment`` among the sets
    ``observation_sets(items)`` made (``times`` in hours from its first set), so that a
    late-arriving event is scored as things stood at its own time, never with values
    charted after it."""
    from medstream.clinical import VITAL_LOINC  # noqa: PLC0415

    instants = [
        when
        for item in items
        if str(item.get("code")) in VITAL_LOINC and (when := _instant(item.get("time")))
    ]
    if not instants or not times:
        return len(times) - 1
    hours = (moment - min(instants)).total_seconds() / 3600
    return max(0, bisect.bisect_right(list(times), hours + 1e-9) - 1)


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
            **({"spo2_scale": vital.spo2_scale} if vital.spo2_scale else {}),
        }
        for vital in event_vitals
    ]
