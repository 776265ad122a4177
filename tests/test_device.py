"""Precision by capability: bf16 by default only where the processor computes it natively."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from mnistgap import device as dev
from mnistgap.device import environment, native_bf16, resolve_precision

CPU = torch.device("cpu")


@pytest.fixture
def cpu_with(monkeypatch: pytest.MonkeyPatch):
    """Pretend the CPU has (or lacks) AVX512-BF16 and AMX."""

    def set_features(avx512_bf16: bool = False, amx: bool = False) -> None:
        monkeypatch.setattr(dev, "cpu_features", lambda: {"avx512_bf16": avx512_bf16, "amx": amx})

    return set_features


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ({}, torch.float32),  # AVX2 only (AMD Zen 3, older Intel): bf16 would be emulated
        ({"avx512_bf16": True}, torch.bfloat16),  # AMD Zen 4, Intel Cooper Lake
        ({"amx": True}, torch.bfloat16),  # Intel Sapphire Rapids and later
    ],
    ids=["avx2", "avx512-bf16", "amx"],
)
def test_auto_is_bf16_only_where_the_cpu_has_it(
    cpu_with, features: dict[str, bool], expected: torch.dtype
) -> None:
    cpu_with(**features)
    assert native_bf16(CPU) is (expected == torch.bfloat16)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == torch.float32


def test_an_explicit_bf16_is_honoured_and_warned_about_where_emulated(
    cpu_with, caplog: pytest.LogCaptureFixture
) -> None:
    cpu_with()
    with caplog.at_level(logging.WARNING, logger="mnistgap.device"):
        assert resolve_precision("bf16", CPU) == torch.bfloat16
    assert "no native bf16" in caplog.text
    caplog.clear()
    cpu_with(amx=True)
    with caplog.at_level(logging.WARNING, logger="mnistgap.device"):
        assert resolve_precision("bf16", CPU) == torch.bfloat16
    assert caplog.text == ""


def test_environment_names_what_the_numbers_depend_on(cpu_with) -> None:
    cpu_with()
    env = environment(CPU, resolve_precision("auto", CPU))
    assert env["device"] == "cpu" and env["precision"] == "fp32" and env["native_bf16"] is False
    assert env["torch"] == torch.__version__ and env["threads"] == torch.get_num_threads()
    assert env["isa"] == torch.backends.cpu.get_cpu_capability() and env["processor"]


def test_this_machines_cpu_probe_agrees_with_its_flags() -> None:
    """torch's probe against /proc/cpuinfo, where there is one (Linux)."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace").split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    features = dev.cpu_features()
    assert features["avx512_bf16"] == ("avx512_bf16" in flags)
    assert features["amx"] == ("amx_tile" in flags)
