"""Which device to compute on, and whether bf16 autocast pays off there."""

from __future__ import annotations

import torch


def select_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` fails clearly when there is none."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was requested but no CUDA device is available")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    """bf16 autocast pays off on CUDA and on CPUs with AMX/AVX-512-BF16; elsewhere use fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return (
        bool(getattr(torch.backends, "mkldnn", None))
        and torch.backends.mkldnn.is_available()
        and (torch.ops.mkldnn._is_mkldnn_bf16_supported())
    )
