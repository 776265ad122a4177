"""`dvc exp run -S key=value` settings: a dotted key into the params tree, a YAML value.

One definition of how a setting names a nested param (``augment.affine.degrees``) and how DVC
reads its value (as YAML: ``1.0e-3`` a float, ``[32,64]`` a list), for the scripts, benchmarks
and tests that apply settings or check them the way ``dvc exp run -S`` does. The stages never
need it: they read params.yaml through :mod:`mnistgap.params`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml


class SettingError(ValueError):
    """A setting that is not ``key=value`` or names no param; the message is one line."""


def parse(setting: str) -> tuple[str, Any]:
    """``"key=value"`` -> ``(key, value read as YAML)``, as DVC reads ``-S key=value``."""
    key, sep, value = setting.partition("=")
    if not sep or not key:
        raise SettingError(f"setting: expected key=value, got {setting!r}")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise SettingError(f"setting: {setting!r} is not valid YAML: {exc.problem}") from None


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
