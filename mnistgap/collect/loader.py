"""The one place where the collect app uses the class-digit loader of the pipeline.

Everything the app needs from the pipeline's reading of digits — the file-name rule
(:mod:`mnistgap.class_folder`), the PNG decoding (:mod:`mnistgap.png`), the preprocessing
recipes and the quality filter (:mod:`mnistgap.recipe`) — is imported here and only here.
Nothing is re-implemented: an image is accepted exactly when ``prepare_class`` would load it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mnistgap.class_folder import DigitName, parse_name
from mnistgap.params import Filter
from mnistgap.png import read_digit as decode_digit
from mnistgap.recipe import ImageError, quality_reason

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
#: (e.g. ``"blank: no ink"``, ``"not an image file (unknown format)"``, ``"filter: ..."``).
ImageRejected = ImageError


def filter_config(values: Mapping[str, Any] | Filter | None) -> Filter:
    """The loader's quality filter from params' ``filter`` section (None: the defaults)."""
    if isinstance(values, Filter):
        return values
    return Filter.model_validate(dict(values)) if values is not None else Filter()


def filter_dict(cfg: Filter) -> dict[str, Any]:
    """The filter settings as plain JSON-ready values."""
    return cfg.model_dump()


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


def read_digit(source: Path | bytes, preprocess: str, filter_cfg: Filter) -> np.ndarray:
    """Load one PNG (a file or its bytes) as ``prepare_class`` does: 28×28 ``uint8``, light
    ink on black.

    Decoding (any PNG mode, size and bomb checks), the ``preprocess`` recipe (``"mnist"`` or
    ``"study"``) and the quality filter are the loader's. Raises :data:`ImageRejected` with the
    loader's reason when the image would be rejected.
    """
    img = decode_digit(source, preprocess)  # type: ignore[arg-type]
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
