"""Measure the seed spread of a configuration: one `dvc exp run --temp` per seed, one record.

    python scripts/seed_spread.py NAME [--seeds 1 2 3] [--keep] [-j N] [-S key=value ...]
    python scripts/seed_spread.py strong -S preset=strong
    python scripts/seed_spread.py study -S preset=study -j 2
    python scripts/seed_spread.py dev-strong --models-of strong -S preset=strong \
        -S class_digits.dir=../shared/class_digits_dev

Runs the whole pipeline once per seed as a DVC experiment in a temporary folder
(`dvc exp run --temp -n NAME-seedN -S seed=N -S ...`: the workspace stays as it is, each run
is kept as an experiment that `dvc exp show` lists), then reads each experiment's metrics and
writes reports/seeds/NAME.json: the params the runs shared, the class folder (relative to the
project, and by its content digest, so that the record matches a copy of it anywhere), the
machine they ran on, and per seed the accuracy on MNIST test, the class folder (with and
without MNIST look-alikes) and every independent set. The report stage reads every record
there: it shows the spread beside the run whose configuration a record measured, and the
presets' records side by side. A class folder given relative to the project is run by its
absolute path (the runs happen in a copy of the repository) and recorded relative.

``-j N`` queues the seeds (`dvc exp run --queue`) and runs them on N workers
(`dvc queue start -j N`), waiting until the queue is done; the same experiments, in parallel.
``--keep`` reads an experiment NAME-seedN that already exists instead of running it again
(a record interrupted part-way, or one seed run by hand with the same settings), provided it
ran the committed code: every Python file its dvc.lock lists must have the md5 it has in
HEAD's dvc.lock. Every run, kept or new, must have its seed and every ``-S`` setting, and a
record's runs must agree on all params but the seed.

``--models-of OTHER`` evaluates the checkpoints of the experiments OTHER-seedN (of the committed
code) instead of training again, for a record that differs from OTHER only in what is read,
such as the development folder: each is applied to the workspace (``dvc exp apply``), the
settings set and the pipeline run there (``dvc exp run -n NAME-seedN``: DVC skips ``train``,
whose deps are unchanged), and the workspace restored to HEAD (``git checkout HEAD -- .`` and
``dvc checkout --force --allow-missing``: what the cache holds of HEAD's outputs). It needs a
workspace without changes to tracked files, and stops if the settings made ``train`` run again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnistgap import atomic, settings  # noqa: E402
from mnistgap.params import Params, as_file_dict, validate  # noqa: E402


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout


def _exp_refs(name: str) -> list[str]:
    """The git refs of experiments named ``name`` (DVC keeps each as refs/exps/.../name)."""
    refs = _git("for-each-ref", "--format=%(refname)", "refs/exps").split()
    return [r for r in refs if r.rsplit("/", 1)[-1] == name]


def _exp_ref(name: str) -> str:
    """The git ref of the one experiment named ``name``."""
    matches = _exp_refs(name)
    if len(matches) != 1:
        sys.exit(f"seed_spread: expected one experiment named {name}, found {len(matches)}")
    return matches[0]


def _read(ref: str, path: str) -> dict:
    return json.loads(_git("show", f"{ref}:{path}"))


def _read_if_there(ref: str, path: str) -> dict | None:
    """A metrics file of ``ref``, or None where that commit has none (an older pipeline)."""
    got = subprocess.run(
        ["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return json.loads(got.stdout) if got.returncode == 0 else None


#: The metrics a record keeps per seed beside the evaluation sets: the model adapted to the
#: class (stage adapt), out-of-fold on the class folder and on MNIST test.
ADAPTED_METRICS = {"adapted": "accuracy", "adapted_mnist": "mnist_accuracy"}


def headline(read: Callable[[str], dict | None], external: list[str]) -> dict:
    """One run's numbers from its metrics files (``read``: path -> parsed file or None):
    the accuracy on MNIST test, the class folder (with and without MNIST look-alikes), every
    independent set, and the adapted model's (None where stage adapt did not adapt or did not
    exist)."""
    klass = read("reports/class/metrics.json") or {}
    adapt = read("reports/adapt/metrics.json") or {}
    run = {
        "mnist": (read("reports/mnist/metrics.json") or {}).get("accuracy"),
        "class": klass.get("accuracy"),
        "class_without_flagged": klass.get("without_flagged", {}).get("accuracy"),
    }
    for ext in external:
        run[ext] = (read(f"reports/external/{ext}/metrics.json") or {}).get("accuracy")
    return run | {name: adapt.get(key) for name, key in ADAPTED_METRICS.items()}


def means(runs: list[dict]) -> dict[str, float]:
    """The mean over the runs of every number they hold (runs without it left out)."""
    keys = [k for k in runs[0] if k not in ("seed", "experiment")]
    out = {}
    for k in keys:
        values = [r[k] for r in runs if isinstance(r.get(k), int | float)]
        if values:
            out[k] = sum(values) / len(values)
    return out


def _code_md5s(lock: dict) -> dict[str, str]:
    """path -> md5 of every Python file that a stage of this dvc.lock depends on."""
    return {
        dep["path"]: dep["md5"]
        for stage in lock["stages"].values()
        for dep in stage.get("deps", [])
        if dep["path"].endswith(".py")
    }


def committed_md5s(paths: list[str], ref: str = "HEAD") -> dict[str, str]:
    """path -> md5 of the file as committed in ``ref`` (DVC's md5: of the bytes); a path the
    commit lacks is left out."""
    out = {}
    for path in paths:
        got = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=REPO, capture_output=True)
        if got.returncode == 0:
            out[path] = hashlib.md5(got.stdout).hexdigest()
    return out


def changed_code(kept_lock: dict, committed: dict[str, str]) -> list[str]:
    """The Python files whose md5 in a kept experiment's dvc.lock is not the committed file's
    (``committed``: path -> md5, :func:`committed_md5s`). HEAD's own dvc.lock is not asked: it
    may be older than the code it sits beside."""
    return sorted(p for p, md5 in _code_md5s(kept_lock).items() if committed.get(p) != md5)


def differing_params(params: list[Params]) -> list[str]:
    """The top-level params, other than the seed, on which these runs disagree."""
    files = [as_file_dict(p) for p in params]
    return sorted(
        k for k in files[0] if k != "seed" and any(f.get(k) != files[0][k] for f in files)
    )


def unmet_settings(params: Params, sets: list[str]) -> list[str]:
    """The ``key=value`` settings (dotted keys, YAML values, as ``-S`` takes them) that
    ``params`` does not have."""
    values = as_file_dict(params)
    unmet = []
    for s in sets:
        key, value = settings.parse(s)
        try:
            met = settings.lookup(values, key) == value
        except KeyError:
            met = False
        if not met:
            unmet.append(s)
    return unmet


def _lock(ref: str) -> dict:
    return yaml.safe_load(_git("show", f"{ref}:dvc.lock"))


def _require_head_code(exp: str, ref: str) -> None:
    kept = _lock(ref)
    stale = changed_code(kept, committed_md5s(sorted(_code_md5s(kept))))
    if stale:
        sys.exit(f"seed_spread: {exp} ran other code than HEAD ({', '.join(stale)}); run it again")


def _exp_cmd(exp: str, seed: int, sets: list[str], mode: str) -> list[str]:
    """``dvc exp run [--temp|--queue] -n exp -S seed=N -S ...``."""
    flag = {"temp": ["--temp"], "queue": ["--queue"], "workspace": []}[mode]
    cmd = ["dvc", "exp", "run", *flag, "-n", exp, "-S", f"seed={seed}"]
    for s in sets:
        cmd += ["-S", s]
    return cmd


def _exp_run(exp: str, seed: int, sets: list[str], temp: bool) -> bool:
    """``dvc exp run [--temp] -n exp -S seed=N -S ...`` (an older run of that name removed
    first); whether it succeeded."""
    subprocess.run(["dvc", "exp", "remove", exp], cwd=REPO, capture_output=True, check=False)
    cmd = _exp_cmd(exp, seed, sets, "temp" if temp else "workspace")
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, check=False).returncode == 0


def run_queued(exps: dict[str, int], sets: list[str], jobs: int, poll: float = 10.0) -> None:
    """Queue one experiment per seed (``dvc exp run --queue``), run them on ``jobs`` workers
    (``dvc queue start -j N``) and wait until none is queued or running; the experiments
    that failed are named (their output: ``dvc queue logs NAME``)."""
    for exp, seed in exps.items():
        subprocess.run(["dvc", "exp", "remove", exp], cwd=REPO, capture_output=True, check=False)
        cmd = _exp_cmd(exp, seed, sets, "queue")
        print("$ " + " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=REPO, check=True)
    subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=REPO, check=True)
    while True:
        rows = _queue_status()
        pending = [e for e in exps if rows.get(e) in {"Queued", "Running"}]
        if not pending:
            break
        time.sleep(poll)
    failed = [e for e in exps if not _exp_refs(e)]
    if failed:
        sys.exit(f"seed_spread: {', '.join(failed)} failed (dvc queue logs NAME); no record")


def _queue_status() -> dict[str, str]:
    """Experiment name -> status, from ``dvc queue status``'s table."""
    out = subprocess.run(
        ["dvc", "queue", "status"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    # "79052d4  NAME  02:49 PM  Queued": a task's id, name, creation time and status.
    return {
        m.group(1): m.group(2)
        for m in re.finditer(r"^[0-9a-f]{7,40}\s+(\S+)\s.*\s(\S+)\s*$", out, re.MULTILINE)
    }


def _failed(exp: str) -> NoReturn:
    sys.exit(f"seed_spread: {exp} failed (its output is above); no record was written")


def run_on_models_of(source: str, exp: str, seed: int, sets: list[str]) -> str:
    """Experiment ``exp``: the pipeline run in the workspace from experiment ``source``'s
    state with the settings, so that ``train`` is skipped; the workspace is restored after."""
    if _git("status", "--porcelain", "--untracked-files=no").strip():
        sys.exit("seed_spread: --models-of runs in the workspace: commit or stash your changes")
    src = _exp_ref(source)
    _require_head_code(source, src)
    try:
        applied = subprocess.run(["dvc", "exp", "apply", source], cwd=REPO, check=False)
        ok = applied.returncode == 0 and _exp_run(exp, seed, sets, temp=False)
    finally:
        subprocess.run(["git", "checkout", "HEAD", "--", "."], cwd=REPO, check=True)
        # --allow-missing: HEAD's outputs need not be in this cache (a fresh clone's is empty).
        subprocess.run(
            ["dvc", "checkout", "--force", "--allow-missing", "-q"], cwd=REPO, check=True
        )
    if not ok:
        _failed(exp)
    ref = _exp_ref(exp)
    if _lock(ref)["stages"]["train"] != _lock(src)["stages"]["train"]:
        sys.exit(f"seed_spread: {exp} trained again: its settings change training")
    return ref


def portable(sets: list[str]) -> tuple[list[str], list[str]]:
    """The settings to run with and the ones to record: a class folder named relative to the
    project is run by its absolute path (queued and ``--temp`` runs happen in a copy of the
    repository elsewhere) and recorded relative to the project, never as this machine's
    absolute path."""
    run, record = [], []
    for setting in sets:
        key, value = settings.parse(setting)
        if key == "class_digits.dir" and isinstance(value, str):
            path = Path(value) if Path(value).is_absolute() else REPO / value
            run.append(f"{key}={path.resolve()}")
            record.append(f"{key}={os.path.relpath(path.resolve(), REPO)}")
        else:
            run.append(setting)
            record.append(setting)
    return run, record


def run_seed(
    name: str,
    seed: int,
    sets: list[str],
    keep: bool = False,
    models_of: str | None = None,
    ran: bool = False,
) -> dict:
    """One experiment: the pipeline with this seed; returns its headline numbers. With
    ``keep`` (or ``ran``: run by the queue just now), an existing experiment of that name is
    read instead (if it ran HEAD's code); with ``models_of``, experiment
    ``{models_of}-seed{seed}``'s checkpoints are evaluated."""
    exp = f"{name}-seed{seed}"
    if (keep or ran) and _exp_refs(exp):
        ref = _exp_ref(exp)
        _require_head_code(exp, ref)
        print(f"{'reading' if ran else 'keeping'} experiment {exp}", flush=True)
    elif models_of is not None:
        ref = run_on_models_of(f"{models_of}-seed{seed}", exp, seed, sets)
    else:
        if not _exp_run(exp, seed, sets, temp=True):
            _failed(exp)
        ref = _exp_ref(exp)
    params = validate(yaml.safe_load(_git("show", f"{ref}:params.yaml")))
    unmet = unmet_settings(params, [f"seed={seed}", *sets])
    if unmet:
        sys.exit(f"seed_spread: {exp} was not run with {' '.join(unmet)}; run it again")
    run = {"seed": seed, "experiment": exp} | headline(
        lambda path: _read_if_there(ref, path), params.external
    )
    return {
        "run": run,
        "params": params,
        "environment": _read(ref, "reports/train/environment.json"),
        "folder": _read(ref, "reports/class/folder.json")["digest"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="the record's name: reports/seeds/NAME.json")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("-S", "--set-param", action="append", default=[], dest="sets")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "seeds")
    ap.add_argument("--keep", action="store_true", help="read existing NAME-seedN experiments")
    ap.add_argument(
        "--models-of", metavar="OTHER", help="evaluate OTHER-seedN's checkpoints, not train"
    )
    ap.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=None,
        help="queue the seeds and run them on N workers (dvc queue start -j N)",
    )
    args = ap.parse_args()
    if len(args.seeds) < 3:
        sys.exit("seed_spread: a spread needs at least 3 seeds")
    if shutil.which("dvc") is None:
        sys.exit("seed_spread: no `dvc` on PATH: activate the project's environment first")
    if args.jobs is not None and (args.jobs < 1 or args.models_of or args.keep):
        sys.exit("seed_spread: --jobs N (N >= 1) queues new runs: not with --keep or --models-of")
    try:
        sets, recorded = portable(args.sets)
    except settings.SettingError as err:
        sys.exit(f"seed_spread: {err}")

    if args.jobs is not None:
        run_queued({f"{args.name}-seed{seed}": seed for seed in args.seeds}, sets, args.jobs)
    results = [
        run_seed(args.name, seed, sets, args.keep, args.models_of, ran=args.jobs is not None)
        for seed in args.seeds
    ]
    differ = differing_params([r["params"] for r in results])
    if differ:
        sys.exit(f"seed_spread: the runs disagree on {', '.join(differ)}; run them alike")
    envs = {json.dumps(r["environment"], sort_keys=True) for r in results}
    if len(envs) != 1:
        sys.exit("seed_spread: the runs disagree about the machine; run them on one machine")
    # The params the runs shared (the first run's; only the seed differs between them), with
    # the folder as recorded: relative to the project, and named by its content.
    params = as_file_dict(results[0]["params"])
    folder = dict(settings.parse(s) for s in recorded).get(
        "class_digits.dir", params["class_digits"]["dir"]
    )
    params["class_digits"] = {**params["class_digits"], "dir": folder}
    record = {
        "name": args.name,
        "set": dict(s.split("=", 1) for s in recorded),
        "params": params,
        "folder": {"dir": folder, "digest": results[0]["folder"]},
        "environment": results[0]["environment"],
        "runs": [r["run"] for r in results],
    }
    record["mean"] = means(record["runs"])
    atomic.write_json(args.out / f"{args.name}.json", record)
    print(f"wrote {args.out / f'{args.name}.json'}")
    for r in record["runs"]:
        print("  " + ", ".join(f"{k} {v}" for k, v in r.items()))
    print("  mean: " + ", ".join(f"{k} {v:.4f}" for k, v in record["mean"].items()))


if __name__ == "__main__":
    main()
