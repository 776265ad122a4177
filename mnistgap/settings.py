"""`dvc exp run -S key=value` settings: a dotted key into the params tree, a value read as DVC
reads it.

DVC applies ``-S`` through Hydra's override grammar (with ``hydra.enabled`` as here, by
composing ``conf/``; without it, by the same grammar on params.yaml), so this module parses a
setting with Hydra's own parser: ``1e-3`` and ``1.0e-3`` are floats, ``[32,64]`` a list,
``false`` a bool, ``preset=strong`` a choice of preset. One definition of how a setting names a
nested param (``augment.affine.degrees``) and what its value is, for the scripts, benchmarks and
tests that apply settings or check them the way ``dvc exp run -S`` does. The stages never need
it: they read params.yaml through :mod:`mnistgap.params`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class SettingError(ValueError):
    """A setting that is not ``key=value`` or names no param; the message is one line."""


def parse(setting: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value)`` as ``dvc exp run -S key=value`` reads it (Hydra's
    override grammar). Sweeps (``lr=1e-2,1e-3``) and Hydra's ``+``/``~`` forms are refused:
    a setting sets one existing key to one value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import OverrideType
    from hydra.errors import HydraException

    key, sep, _ = setting.partition("=")
    if not sep or not key:
        raise SettingError(f"setting: expected key=value, got {setting!r}")
    try:
        override = OverridesParser.create().parse_override(setting)
    except HydraException as exc:
        detail = " ".join(str(exc).split())
        raise SettingError(f"setting: {setting!r} is not a valid override: {detail}") from None
    if override.type != OverrideType.CHANGE or override.package is not None:
        raise SettingError(f"setting: {setting!r}: only key=value, no +, ~ or @package")
    if override.is_sweep_override():
        raise SettingError(f"setting: {setting!r} is a sweep (several values), not one value")
    return override.key_or_group, override.value()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"augment": {"blur": {"p": 0.25}}}`` -> ``{"augment.blur.p": 0.25}``: every leaf of a
    params tree under its dotted key, in the tree's order."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out |= flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def lookup(tree: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of ``tree``; :class:`KeyError` (of ``key``) if none."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def applied(tree: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``tree`` with each dotted key of ``settings`` set to its value.

    Only existing keys can be set (params.yaml has every key; a new one would be a typo), so
    an unknown key raises :class:`SettingError`; ``tree`` itself is left as it was.
    """
    out = copy.deepcopy(dict(tree))
    for key, value in settings.items():
        parent, _, leaf = key.rpartition(".")
        try:
            node = lookup(out, parent) if parent else out
        except KeyError:
            node = None
        if not isinstance(node, dict) or leaf not in node:
            raise SettingError(f"setting: unknown key '{key}'")
        node[leaf] = value
    return out
