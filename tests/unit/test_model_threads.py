"""Each model process's CPU threads follow MEDSTREAM_MODEL_THREADS (1 by default)."""

from __future__ import annotations

import os

import pytest
import torch

from medstream.runtime import limit_model_threads
from medstream.settings import Settings


def test_the_default_is_one_thread_per_model_process() -> None:
    assert Settings().model_threads == 1


def test_torch_gets_the_setting_and_zero_leaves_it(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    try:
        limit_model_threads(0)
        assert torch.get_num_threads() == before
        assert "OMP_NUM_THREADS" not in os.environ
        limit_model_threads(1)
        assert torch.get_num_threads() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
