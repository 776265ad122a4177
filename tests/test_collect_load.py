"""A small bounded version of benchmarks/collect_load.py (slow): a class at once, in class mode.

12 students on the real command (one uvicorn worker, 127.0.0.1, a tiny checkpoint), each with
a live reading every 0.2 s for 2 s and 3 digits saved: every save answered 201 and on disk
exactly once, byte for byte; the contested name won once (the others lack its token); no
5xx; neither the class code nor a token in the server's log. The 60-client figures are the
benchmark's (docs/class-mode.md).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from mnistgap.models import MLP, save_checkpoint
from mnistgap.params import ModelParams

pytestmark = pytest.mark.slow

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "collect_load.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("collect_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["collect_load"] = module
    spec.loader.exec_module(module)
    return module


def test_a_small_class_at_once(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "model.pt"
    save_checkpoint(model, MLP([16], 0.0), ModelParams(model="mlp", hidden=[16], dropout=0.0))
    bench = load_benchmark()
    outcome = bench.run(model, "class", clients=12, seconds=2.0, saves=3, interval=0.2)
    print("\n".join(outcome.lines))
    report = "\n".join(outcome.lines)
    assert "save: 36 requests" in report
    assert "status {201: 36}" in report
    assert "same name from 12 clients at once: {201: 1, 403: 11}" in report
    assert "5xx or no answer: 0" in report
    assert "in the server log: 0" in report
    assert outcome.ok, report
