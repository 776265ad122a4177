"""Named presets: DVC's own Hydra composition of ``conf/`` into params.yaml, for the tools.

``conf/config.yaml`` holds every param's default (rendered from :mod:`mnistgap.params`);
``conf/preset/<name>.yaml`` holds what a preset changes, each recipe written once. ``dvc exp
run -S preset=strong -S lr=1e-2`` composes them (``.dvc/config``: ``hydra.enabled``) and writes
params.yaml; :func:`write_params` calls the very function DVC calls, so the committed
params.yaml is byte for byte what ``dvc exp run`` writes for the default preset. The scripts,
benchmarks, docs tests and seed records read a preset's params through :func:`compose`
instead of repeating its settings. The stages never import this module: they read params.yaml.

    python -m mnistgap.presets                     # params.yaml: the default preset
    python -m mnistgap.presets preset=strong lr=1e-2
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from mnistgap.params import Params, as_file_dict, validate
from mnistgap.settings import flatten

#: Where the composition lives, relative to the project (DVC's default ``hydra.config_dir``).
CONF_DIR = "conf"
CONFIG_NAME = "config"


class PresetError(ValueError):
    """A preset or override that does not compose; the message is one line."""


def names(conf_dir: str | Path = CONF_DIR) -> list[str]:
    """The presets ``conf_dir/preset/`` defines, sorted."""
    return sorted(p.stem for p in (Path(conf_dir) / "preset").glob("*.yaml"))


def write_params(
    out: str | Path, overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR
) -> None:
    """Compose ``conf_dir`` with ``overrides`` (Hydra's grammar, as ``-S`` takes them) into
    ``out`` exactly as ``dvc exp run`` does (DVC's ``compose_and_dump``)."""
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    conf = Path(conf_dir).resolve()
    try:
        compose_and_dump(out, str(conf), None, CONFIG_NAME, str(conf), list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), repr(exc))
        raise PresetError(f"presets: {' '.join(overrides) or 'defaults'}: {first}") from None


def compose(overrides: Sequence[str] = (), conf_dir: str | Path = CONF_DIR) -> Params:
    """The validated params that ``dvc exp run -S o1 -S o2 ...`` would write."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "params.yaml"
        write_params(out, overrides, conf_dir)
        return validate(yaml.safe_load(out.read_text(encoding="utf-8")))


def changes(name: str, conf_dir: str | Path = CONF_DIR) -> dict[str, Any]:
    """What preset ``name`` sets beside the default preset: ``{dotted key: value}`` in the
    file's order, the preset's own label left out (for tables and docs)."""
    ours = flatten(as_file_dict(compose([f"preset={name}"], conf_dir)))
    base = flatten(as_file_dict(compose([], conf_dir)))
    return {k: v for k, v in ours.items() if k != "preset" and base.get(k) != v}


if __name__ == "__main__":
    try:
        write_params("params.yaml", sys.argv[1:])
    except PresetError as err:
        sys.exit(str(err))
