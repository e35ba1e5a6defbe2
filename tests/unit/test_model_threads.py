"""Each model process's CPU threads follow MEDSTREAM_MODEL_THREADS, else its service's
default (1 for the monitoring worker, the libraries' own for the others)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from medstream.runtime import limit_model_threads
from medstream.settings import Settings


def test_unset_means_each_service_s_own_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEDSTREAM_MODEL_THREADS", raising=False)
    assert Settings().model_threads is None
    source = (Path(__file__).parents[2] / "services/medstream_monitoring/app.py").read_text()
    assert "run(NAME, wire, model_threads=1)" in source


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
