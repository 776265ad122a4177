"""The one place where the collect app uses the class-digit loader of the pipeline.

Everything the app needs from ``mnistgap.class_digits`` — the file-name rule, the PNG
decoding, the preprocessing recipes and the quality filter — is imported here and only here,
so that a change of that module's layout is a change of this file alone. Nothing is
re-implemented: an image is accepted exactly when ``prepare_class`` would load it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mnistgap.class_digits import (
    ClassImageError,
    DigitName,
    FilterConfig,
    load_image,
    parse_name,
    quality_reason,
)

__all__ = [
    "DigitName",
    "ImageRejected",
    "filter_config",
    "filter_dict",
    "name_for",
    "parse_name",
    "read_digit",
    "saved_digits",
    "twin_of",
]

#: Raised by :func:`read_digit`; ``str(err)`` is the loader's one-line reason
#: (e.g. ``"blank: no ink"``, ``"not a PNG file (bad signature)"``, ``"filter: ..."``).
ImageRejected = ClassImageError


def filter_config(values: Mapping[str, Any] | FilterConfig | None) -> FilterConfig:
    """The loader's quality filter from params' ``filter`` section (None: the defaults)."""
    if isinstance(values, FilterConfig):
        return values
    return FilterConfig(**dict(values)) if values is not None else FilterConfig()


def filter_dict(cfg: FilterConfig) -> dict[str, Any]:
    """The filter settings as plain JSON-ready values."""
    return asdict(cfg)


def name_for(digit: int, group: int, member: int) -> str:
    """The file name ``<digit>-<group>-<member>.png``, checked with the loader's own rule.

    Raises ``ValueError`` (one-line reason) when the loader would not accept the name or
    would read other numbers from it, so the app never writes a file ``prepare_class``
    rejects or mislabels.
    """
    name = f"{digit}-{group}-{member}.png"
    parsed = parse_name(name)
    if parsed != DigitName(digit, group, member):
        raise ValueError(f"{name} would be read as {parsed}")
    return name


def read_digit(path: Path, preprocess: str, filter_cfg: FilterConfig) -> np.ndarray:
    """Load one PNG file as ``prepare_class`` does: 28×28 ``uint8``, light ink on black.

    Decoding (any PNG mode, size and bomb checks), the ``preprocess`` recipe (``"mnist"`` or
    ``"seed"``) and the quality filter are the loader's. Raises :data:`ImageRejected` with the
    loader's reason when the image would be rejected.
    """
    img = load_image(Path(path), preprocess)  # type: ignore[arg-type]
    reason = quality_reason(img, filter_cfg)
    if reason is not None:
        raise ImageRejected(reason)
    return img


def twin_of(folder: Path, name: str) -> str | None:
    """Another file in ``folder`` that the loader reads as the same digit as ``name``.

    E.g. a hand-placed ``7-01-2.png`` for ``7-1-2.png``: ``prepare_class`` would keep one
    and reject the other as a duplicate. One directory scan, names only.
    """
    wanted = parse_name(name)
    prefix = f"{wanted.digit}-"
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == name or not entry.name.startswith(prefix):
                continue
            try:
                same = parse_name(entry.name) == wanted
            except ValueError:
                continue
            if same and entry.is_file():
                return entry.name
    return None


def saved_digits(folder: Path) -> list[tuple[str, DigitName]]:
    """``(file name, parsed name)`` of every regular file in ``folder`` named like a digit."""
    out = []
    for entry in sorted(Path(folder).iterdir(), key=lambda p: p.name):
        try:
            parsed = parse_name(entry.name)
        except ValueError:
            continue
        if entry.is_file():
            out.append((entry.name, parsed))
    return out
