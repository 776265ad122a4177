"""dvc.yaml agrees with the code: commands, code deps, params, paths and plots.

DVC reruns a stage only when something it lists changes, so every list must be exact:
a missing code dep means a stale result after an edit; a missing param means a stale
result after ``dvc exp run -S``; an extra one means needless reruns.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from mnistgap.settings import lookup

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mnistgap", "stages")
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
# A `foreach` stage is checked through its `do` body (its ${item} paths are compared as written).
STAGES: dict[str, dict[str, Any]] = {
    name: stage.get("do", stage) for name, stage in DVC["stages"].items()
}
PARAMS_FILE = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))

# Stages whose dvc.yaml deps are known not to match their imports (none at present): an
# entry turns that stage's check into a strict xfail until dvc.yaml is fixed.
KNOWN_DEP_GAPS: dict[str, str] = {}
# Deps that are committed files no stage writes (the report reads them).
COMMITTED_INPUTS = {"reports/seeds"}


# --------------------------------------------------------------------------- helpers
def _module_file(module: str) -> Path | None:
    """The .py file of a project module (``mnistgap.x`` -> mnistgap/x.py), else None."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    base = REPO.joinpath(*parts)
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported_modules(path: Path) -> set[str]:
    """Project modules imported anywhere in ``path`` (top level or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this file's package
                base_parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            # `from mnistgap import atomic` imports the submodule mnistgap/atomic.py
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return {m for m in found if _module_file(m) is not None}


@cache
def project_imports(path: Path) -> frozenset[Path]:
    """Every project .py file that importing ``path`` executes (transitively), ``path`` included.

    Package ``__init__.py`` files are left out: they are docstring-only (checked below), so
    they change no stage's result, and dvc.yaml does not list them.
    """
    seen: set[Path] = set()
    todo = [path]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for module in _imported_modules(current):
            file = _module_file(module)
            if file is not None and file not in seen:
                todo.append(file)
    return frozenset(p for p in seen if p.name != "__init__.py")


def _names(entries: list[Any] | None) -> list[str]:
    """Paths of a deps/outs/metrics list (entries are strings or one-key dicts)."""
    out = []
    for entry in entries or []:
        out += list(entry) if isinstance(entry, dict) else [entry]
    return out


def _outputs(stage: dict[str, Any]) -> list[str]:
    return _names(stage.get("outs")) + _names(stage.get("metrics")) + _names(stage.get("plots"))


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _cmd_flags(cmd: str) -> list[tuple[str, str]]:
    """(flag, value) pairs of ``--flag value`` in a command."""
    words = shlex.split(cmd)
    return [
        (w, words[i + 1])
        for i, w in enumerate(words[:-1])
        if w.startswith("--") and not words[i + 1].startswith("--")
    ]


def _looks_like_path(value: str) -> bool:
    return "/" in value or re.search(r"\.[A-Za-z0-9]+$", value) is not None


#: Modules that several stages run, because the stages are the same code.
SHARED_MODULES = {"evaluate_split": {"evaluate_mnist", "evaluate_external"}}


def _module_name(name: str) -> str:
    """The stage module a stage's command runs (``python -m stages.<module> ...``)."""
    match = re.match(r"python -m stages\.(\w+)(?: |$)", STAGES[name]["cmd"])
    assert match, f"{name}: its command does not run a stage module"
    return match.group(1)


def _stage_module(name: str) -> Any:
    """A stage's module, by the stage's name (or by a module's own name)."""
    return importlib.import_module(f"stages.{_module_name(name) if name in STAGES else name}")


def _in_params_file(key: str) -> bool:
    """A top-level or dotted key (``class_digits.preprocess``) of params.yaml."""
    try:
        lookup(PARAMS_FILE, key)
    except KeyError:
        return False
    return True


def _params_of(stage: dict[str, Any]) -> Any:
    """dvc.yaml's params list as the stage module's PARAMS would spell it."""
    params = stage.get("params", [])
    if params == [{"params.yaml": None}]:
        return None  # the whole file
    assert all(isinstance(p, str) for p in params), params
    return tuple(params)


# --------------------------------------------------------------------------- the checks
def test_package_inits_import_nothing() -> None:
    for package in PACKAGES:
        tree = ast.parse((REPO / package / "__init__.py").read_text(encoding="utf-8"))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)], (
            f"{package}/__init__.py imports modules: list them as deps or drop the import"
        )


def test_every_stage_module_is_in_dvc_yaml() -> None:
    modules = {p.stem for p in (REPO / "stages").glob("*.py") if p.stem != "__init__"}
    # Modules that are not pipeline stages (e.g. a predict CLI) carry no PARAMS.
    stage_like = {m for m in modules if hasattr(_stage_module(m), "PARAMS")}
    assert stage_like == {_module_name(name) for name in STAGES}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_runs_the_stage_module(name: str) -> None:
    """A stage runs the module of its name, or one module shared by stages that are the same
    code (evaluate_mnist and evaluate_external run stages/evaluate_split.py)."""
    module = _module_name(name)
    assert module == name or module in SHARED_MODULES, f"{name} runs stages/{module}.py"
    assert (REPO / "stages" / f"{module}.py").is_file()
    if module in SHARED_MODULES:
        assert name in SHARED_MODULES[module]


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_DEP_GAPS[n], strict=True))
        if n in KNOWN_DEP_GAPS
        else n
        for n in sorted(STAGES)
    ],
)
def test_code_deps_are_exactly_the_imported_modules(name: str) -> None:
    imported = {
        p.relative_to(REPO).as_posix()
        for p in project_imports(REPO / "stages" / f"{_module_name(name)}.py")
    }
    listed = {d for d in _names(STAGES[name].get("deps")) if d.endswith(".py")}
    missing, extra = sorted(imported - listed), sorted(listed - imported)
    assert not missing and not extra, f"{name}: missing deps {missing}, extra deps {extra}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_params_are_exactly_what_the_stage_reads(name: str) -> None:
    module = _stage_module(name)
    assert hasattr(module, "PARAMS"), f"stages/{_module_name(name)}.py has no PARAMS"
    declared = module.PARAMS
    listed = _params_of(STAGES[name])
    if declared is None:
        assert listed is None, f"{name}: PARAMS = None needs `- params.yaml:` in dvc.yaml"
    else:
        assert isinstance(declared, tuple)
        assert set(declared) == set(listed or ()), (
            f"{name}: PARAMS {sorted(declared)} vs dvc.yaml {sorted(listed or ())}"
        )
        assert len(set(declared)) == len(declared)
        unknown = [k for k in declared if not _in_params_file(k)]
        assert not unknown, f"{name}: unknown keys in PARAMS: {unknown}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_loads_exactly_its_params(name: str) -> None:
    """main() must pass PARAMS itself to load_params, so the declared keys are the read ones."""
    tree = ast.parse((REPO / "stages" / f"{_module_name(name)}.py").read_text(encoding="utf-8"))
    calls = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "load_params"
    ]
    assert len(calls) == 1, f"{name}: expected one load_params call, found {len(calls)}"
    args = calls[0].args
    assert len(args) == 2 and isinstance(args[1], ast.Name) and args[1].id == "PARAMS", (
        f"{name}: call load_params(args.params, PARAMS)"
    )


#: Folders a command reads that are deliberately neither deps nor outs: the checksum-verified
#: raw files of an independent set (a cache of a download, as ~/.cache is), which dvc.lock must
#: not depend on; the prepared .npz is the tracked output (see dvc.yaml).
UNDECLARED_INPUTS = {("prepare_external", "data/external/${item}")}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_cmd_paths_are_declared(name: str) -> None:
    stage = STAGES[name]
    declared = _names(stage.get("deps")) + _outputs(stage)
    for flag, value in _cmd_flags(stage["cmd"]):
        if (name, value) in UNDECLARED_INPUTS:
            continue
        if value == "${class_digits.dir}":
            assert value in declared, f"{name}: {flag} {value} is not a dep"
            continue
        if not _looks_like_path(value):
            continue
        if value == "params.yaml":
            assert "params" in stage, f"{name}: reads params.yaml but lists no params"
            continue
        # A file is listed itself; a folder argument is fine when what is listed lies in it.
        assert any(_under(d, value) for d in declared), (
            f"{name}: {flag} {value} is neither a dep/out nor a folder holding one"
        )


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declared_data_paths_are_in_the_cmd(name: str) -> None:
    stage = STAGES[name]
    values = [v for _, v in _cmd_flags(stage["cmd"])]
    data_deps = [d for d in _names(stage.get("deps")) if not d.endswith(".py")]
    for path in data_deps + _outputs(stage):
        assert any(_under(path, v) for v in values), (
            f"{name}: {path} is listed but its command names neither it nor a folder above it"
        )


def test_every_param_is_read_by_some_stage() -> None:
    # The report stage prints the whole file (PARAMS = None); it does not count as a reader.
    read: set[str] = set()
    for name, stage in STAGES.items():
        declared = _stage_module(name).PARAMS
        if declared is not None:
            read |= {key.split(".")[0] for key in declared}
        # ${key} in a command or a foreach: DVC reads and tracks it too.
        templated = stage["cmd"] + " " + str(DVC["stages"][name].get("foreach", ""))
        read |= {m.split(".")[0] for m in re.findall(r"\$\{([\w.]+)\}", templated)}
    # `preset` is a label (which preset the params came from): the report prints it and no
    # computation reads it, so naming the preset that equals a run's settings retrains nothing.
    unread = sorted(set(PARAMS_FILE) - read - {"preset"})
    assert not unread, f"params.yaml keys no stage reads: {unread}"


def _plot_files() -> list[str]:
    files: list[str] = []
    for entry in DVC.get("plots", []):
        if isinstance(entry, str):
            files.append(entry)
            continue
        for key, spec in entry.items():
            axes = [spec.get(a) for a in ("x", "y")] if isinstance(spec, dict) else []
            data = [f for axis in axes if isinstance(axis, dict) for f in axis]
            files += data or [key]  # a bare `- file: {...}` entry names the file itself
    return files


def test_plot_files_are_stage_outputs() -> None:
    outputs = {o for stage in STAGES.values() for o in _outputs(stage)}
    files = _plot_files()
    assert len(files) >= 10
    orphans = [f for f in files if not any(_under(f, o) for o in outputs)]
    assert not orphans, f"plots no stage produces: {orphans}"


def test_plot_data_files_exist_on_a_stage_output_we_write() -> None:
    """The per-epoch TSVs are dvclive's names: reports/train/plots/metrics/<split>/<metric>.tsv."""
    tsvs = [f for f in _plot_files() if f.endswith(".tsv")]
    assert sorted(tsvs) == sorted(
        f"reports/train/plots/metrics/{split}/{metric}.tsv"
        for split in ("train", "val")
        for metric in ("loss", "acc")
    )


def test_each_output_has_one_producer() -> None:
    producers: dict[str, list[str]] = {}
    for name, stage in STAGES.items():
        for out in _outputs(stage):
            producers.setdefault(out, []).append(name)
    assert {o: p for o, p in producers.items() if len(p) > 1} == {}


def test_stage_order_deps_come_from_earlier_stages() -> None:
    """Every data dep is an output of a stage listed before, or a folder of such outputs
    (so dvc.yaml reads top-down), or an input no stage makes: the class-digit folder, which
    the user provides, and the seed-spread records, which scripts/seed_spread.py writes."""
    produced: set[str] = set()
    for name, stage in STAGES.items():
        for dep in _names(stage.get("deps")):
            if dep.endswith(".py") or dep.startswith("${") or dep in COMMITTED_INPUTS:
                continue
            assert any(_under(dep, o) or _under(o, dep) for o in produced), (
                f"{name}: {dep} is produced later"
            )
        produced |= set(_outputs(stage))
