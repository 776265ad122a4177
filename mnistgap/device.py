"""Which device to compute on, and in which precision: bf16 only where the hardware has it.

``precision: auto`` (the default) trains in bf16 where the processor computes bf16 natively
(a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX) and in fp32 elsewhere: on a CPU without
them bf16 is emulated through fp32 conversions, slower and with different numbers for nothing.
The choice changes the arithmetic, so a model trained on a machine of another kind differs
slightly (see the README's reproducibility note); :func:`environment` records what was used.
"""

from __future__ import annotations

import logging
import platform
from typing import Literal

import torch

log = logging.getLogger(__name__)

Precision = Literal["auto", "bf16", "fp32"]


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` fails clearly when there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but no CUDA device is available")
    return torch.device(name)


def cpu_features() -> dict[str, bool]:
    """The CPU's bf16-related instruction sets, as torch's own CPU probe reports them."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return {
        "avx512_bf16": bool(probe()) if probe else False,
        "amx": bool(amx()) if amx else False,
    }


def native_bf16(device: torch.device) -> bool:
    """Does ``device`` compute bf16 matrix products natively (not by emulation)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    features = cpu_features()
    return features["avx512_bf16"] or features["amx"]


def resolve_precision(requested: Precision, device: torch.device) -> torch.dtype:
    """The dtype of training's matrix products: ``auto`` is bf16 only where it is native;
    an explicit ``bf16`` is honoured everywhere (with a warning where it is emulated)."""
    native = native_bf16(device)
    if requested == "fp32" or (requested == "auto" and not native):
        return torch.float32
    if not native:
        log.warning("precision bf16 on %s, which has no native bf16: emulated, slower", device)
    return torch.bfloat16


def environment(device: torch.device, dtype: torch.dtype) -> dict[str, object]:
    """What a training run's numbers depend on besides code, data and params: the machine
    kind, the precision and the library versions (runs on the same kind are bit-identical)."""
    if device.type == "cuda":
        processor = torch.cuda.get_device_name(device)
    else:
        caps = getattr(torch._C._cpu, "_get_cpu_capability", dict)()
        processor = str(caps.get("cpu_name") or platform.processor() or platform.machine())
    return {
        "device": device.type,
        "processor": processor,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16(device),
        "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
