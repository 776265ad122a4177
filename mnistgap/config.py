"""Validation of ``params.yaml``: one schema, one clear error per bad key.

Stages call :func:`load_params` once in ``main()`` with the top-level keys they read and
pass plain values down; library modules never open ``params.yaml``. The whole file is
validated (a typo anywhere fails fast, before any work), but only the requested keys
are returned, so a stage's result depends only on the params ``dvc.yaml`` lists for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class ParamsError(ValueError):
    """A missing, unknown or invalid parameter; the message names the key."""


@dataclass(frozen=True)
class _Spec:
    kind: str  # "int" | "float" | "bool" | "str" | "choice" | "int_list" | "float_pair"
    low: float | None = None  # inclusive lower bound
    high: float | None = None  # inclusive upper bound
    low_open: bool = False  # lower bound exclusive
    high_open: bool = False  # upper bound exclusive
    choices: tuple[str, ...] = ()
    min_len: int = 1

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(self.choices)
        kind = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
            "int_list": f"a list of at least {self.min_len} integers",
            "float_pair": "a list [low, high] of two numbers with low <= high",
        }[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        return kind + (" " + " and ".join(bounds) if bounds else "")


def _int(low: float | None = None, high: float | None = None) -> _Spec:
    return _Spec("int", low, high)


def _float(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> _Spec:
    return _Spec("float", low, high, low_open, high_open)


def _choice(*choices: str) -> _Spec:
    return _Spec("choice", choices=choices)


def _pair(low: float | None = None, high: float | None = None) -> _Spec:
    return _Spec("float_pair", low, high)


_BOOL = _Spec("bool")
_PROB = _float(0, 1)

# The schema of params.yaml. Nested dicts are sections; every key is required.
SCHEMA: dict[str, Any] = {
    "seed": _int(0),
    "val_frac": _float(0, 1, low_open=True, high_open=True),
    "model": _choice("mlp", "cnn"),
    "hidden": _Spec("int_list", 1, min_len=1),
    "dropout": _float(0, 1, high_open=True),
    "cnn_channels": _Spec("int_list", 1, min_len=2),
    "lr": _float(0, low_open=True),
    "batch_size": _int(1),
    "max_epochs": _int(1),
    "patience": _int(0),
    "lr_schedule": _choice("none", "cosine"),
    "device": _choice("auto", "cpu", "cuda"),
    "precision": _choice("bf16", "fp32"),
    "eval_batch_size": _int(1),
    "augment": {
        "enabled": _BOOL,
        "affine": {
            "enabled": _BOOL,
            "degrees": _float(0, 180),
            "translate": _float(0, 1),
            "scale": _pair(0, None),
            "shear": _float(0, 89),
        },
        "elastic": {"enabled": _BOOL, "alpha": _float(0), "sigma": _float(0, low_open=True)},
        "thickness": {"enabled": _BOOL, "p": _PROB, "max_radius": _int(1, 3)},
        "erasing": {"enabled": _BOOL, "p": _PROB, "scale": _pair(0, 1), "ratio": _pair(0, None)},
        "noise": {"enabled": _BOOL, "std": _float(0, 1)},
        "contrast": {"enabled": _BOOL, "low": _float(0, 1), "high": _float(0, 1)},
    },
    "class_digits": {"dir": _Spec("str"), "preprocess": _choice("mnist", "seed")},
    "filter": {
        "enabled": _BOOL,
        "min_max_pixel": _int(0, 255),
        "bright_level": _int(0, 255),
        "min_bright_pixels": _int(0, 784),
        "min_contrast": _int(0, 255),
    },
    "leakage": {"threshold": _float(0, 1), "ratio_threshold": _float(0, 1)},
}


def _check(key: str, value: Any, spec: _Spec) -> Any:
    """Return ``value`` converted to its plain Python type, or raise ParamsError."""

    def fail(extra: str = "") -> ParamsError:
        got = f"{value!r} ({type(value).__name__})"
        return ParamsError(f"params: '{key}' must be {spec.describe()}, got {got}{extra}")

    def number(v: Any, integer: bool) -> float | int:
        # bool is an int subclass in Python; `lr: true` is a mistake, not 1.
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise fail(
                " (write floats as 1.0e-3: YAML reads 1e-3 as a string)"
                if isinstance(v, str)
                else ""
            )
        if integer and not (isinstance(v, int) or float(v).is_integer()):
            raise fail()
        if not math.isfinite(v):
            raise fail()
        return int(v) if integer else float(v)

    def in_bounds(v: float) -> bool:
        if spec.low is not None and (v <= spec.low if spec.low_open else v < spec.low):
            return False
        return not (spec.high is not None and (v >= spec.high if spec.high_open else v > spec.high))

    if spec.kind in ("int", "float"):
        v = number(value, spec.kind == "int")
        if not in_bounds(v):
            raise fail()
        return v
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise fail()
        return value
    if spec.kind == "str":
        if not isinstance(value, str) or not value:
            raise fail()
        return value
    if spec.kind == "choice":
        if value not in spec.choices:
            raise fail()
        return value
    if spec.kind == "int_list":
        if not isinstance(value, list) or len(value) < spec.min_len:
            raise fail()
        out = [number(v, True) for v in value]
        if not all(in_bounds(v) for v in out):
            raise fail()
        return out
    if spec.kind == "float_pair":
        if not isinstance(value, list) or len(value) != 2:
            raise fail()
        pair = [number(v, False) for v in value]
        if not all(in_bounds(v) for v in pair) or pair[0] > pair[1]:
            raise fail()
        return pair
    raise AssertionError(spec.kind)  # pragma: no cover


def validate(raw: Mapping[str, Any], schema: Mapping[str, Any] = SCHEMA, prefix: str = "") -> dict:
    """Validate a params mapping against ``schema``; return plain, type-checked values."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params: '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    unknown = sorted(set(raw) - set(schema))
    if unknown:
        raise ParamsError(
            f"params: unknown key '{prefix}{unknown[0]}' (allowed: {', '.join(schema)})"
        )
    out: dict[str, Any] = {}
    for key, spec in schema.items():
        full = prefix + key
        if key not in raw:
            raise ParamsError(f"params: missing key '{full}'")
        if isinstance(spec, Mapping):
            out[key] = validate(raw[key], spec, full + ".")
        else:
            out[key] = _check(full, raw[key], spec)
    return out


def load_params(path: str | Path = "params.yaml", keys: Sequence[str] | None = None) -> dict:
    """Read and validate ``path``; return the requested top-level ``keys`` (all if None)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"params: cannot read {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"params: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    params = validate(raw if raw is not None else {})
    if params["augment"]["contrast"]["low"] > params["augment"]["contrast"]["high"]:
        raise ParamsError("params: 'augment.contrast.low' must be <= 'augment.contrast.high'")
    if keys is None:
        return params
    missing = [k for k in keys if k not in params]
    if missing:
        raise ParamsError(f"params: stage asks for unknown key '{missing[0]}'")
    return {k: params[k] for k in keys}
