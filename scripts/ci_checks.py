"""The checks that prove the committed reports are the ones the committed code makes (CI).

    python scripts/ci_checks.py lock          # before `dvc repro`, on a fresh clone
    python scripts/ci_checks.py reproduced    # after `dvc repro`: regenerated vs committed

``lock``: `dvc status` may only say that outputs are missing (a fresh clone has no DVC
cache: data, models and the raw downloads are regenerated) and, for that reason, that deps
which are other stages' outputs are missing. A changed dependency, command or param, a stage
without a lock entry, or a committed report that differs from what dvc.lock recorded means
dvc.lock is stale (or a report was edited by hand): the check fails and says which.

``reproduced``: compares every metrics file `dvc repro` wrote with the committed one
(`git show HEAD:...`) and prints the table. On the machine kind that produced the committed
reports (same processor, instruction set, precision, thread count and torch: see
reports/train/environment.json) they must be identical. On another kind, the headline
accuracies may differ by at most twice the seed spread that reports/seeds/ records for this
configuration (max - min over seeds; see SPREADS), or by TOLERANCE where none is recorded
yet, and never less than twice the sampling error of the difference (sampling_floor); the
check fails only outside that.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnistgap.params import Params, validate  # noqa: E402
from mnistgap.report import KIND_KEYS, kind_agreement, spread_of  # noqa: E402

#: Allowed difference of a headline accuracy between machine kinds when no seed spread is
#: recorded for the configuration (about the spread of 3 seeds on the 1,797-digit sample).
TOLERANCE = 0.03
MISSING = {"deleted", "not in cache"}


# --------------------------------------------------------------------------- lock
def stage_outputs(dvc_yaml: Mapping[str, Any], external: Iterable[str]) -> list[str]:
    """Every output path of every stage (foreach stages expanded over ``external``)."""
    out: list[str] = []
    for stage in dvc_yaml["stages"].values():
        items = list(external) if "foreach" in stage else [None]
        body = stage.get("do", stage)
        for item in items:
            for key in ("outs", "metrics", "plots"):
                for entry in body.get(key, []) or []:
                    path = next(iter(entry)) if isinstance(entry, dict) else entry
                    out.append(path.replace("${item}", item) if item else path)
    return out


def _is_output(path: str, outputs: list[str]) -> bool:
    return any(path == o or path.startswith(o.rstrip("/") + "/") for o in outputs)


def lock_problems(status: Mapping[str, list[Any]], outputs: list[str]) -> list[str]:
    """What in `dvc status --json` shows a stale dvc.lock (empty: only missing outputs)."""
    problems = []
    for stage, changes in status.items():
        for change in changes:
            if not isinstance(change, dict):
                problems.append(f"{stage}: {change}")
                continue
            for kind, detail in change.items():
                if kind == "changed outs":
                    for path, state in detail.items():
                        if state not in MISSING:
                            problems.append(f"{stage}: output {path} {state}")
                elif kind == "changed deps":
                    for path, state in detail.items():
                        if state != "deleted" or not _is_output(path, outputs):
                            problems.append(f"{stage}: dependency {path} {state}")
                else:
                    problems.append(f"{stage}: {kind} {detail}")
    return problems


def check_lock() -> int:
    proc = subprocess.run(
        ["dvc", "status", "--json"], cwd=REPO, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        print(f"dvc status failed: {proc.stderr.strip()}", file=sys.stderr)
        return 1
    status = json.loads(proc.stdout or "{}")
    params = _params(REPO / "params.yaml")
    dvc_yaml = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    problems = lock_problems(status, stage_outputs(dvc_yaml, params.external))
    if problems:
        print("dvc.lock does not match the committed code, data and params:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        print("run `dvc repro` and commit dvc.lock with the reports it writes", file=sys.stderr)
        return 1
    print(f"dvc.lock matches: {len(status)} stage(s) only miss outputs a clone does not have")
    return 0


# --------------------------------------------------------------------------- reproduced
def _params(path: Path) -> Params:
    return validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def _git_json(path: str) -> Any:
    text = subprocess.run(
        ["git", "show", f"HEAD:{path}"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(text)


def headline(metrics: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """The accuracies the report interprets, keyed like a seed-spread record's runs."""
    return {name: m["accuracy"] for name, m in metrics.items()}


#: Allowed difference between machine kinds, in seed spreads (max - min over the recorded
#: seeds). Two machines' runs differ like two draws of one distribution: their difference
#: has sqrt(2) times a run's standard deviation, and the range of 3 seeds averages 1.7 of
#: them, so one range would fail about one honest comparison in four; two ranges, about one
#: in fifty (normal draws).
SPREADS = 2


def allowed_difference(record: Mapping[str, Any] | None, metric: str) -> float:
    """SPREADS x the seed spread (max - min over seeds) of ``metric``, or TOLERANCE without
    a record."""
    values = [r[metric] for r in (record or {}).get("runs", []) if r.get(metric) is not None]
    return SPREADS * (max(values) - min(values)) if len(values) >= 2 else TOLERANCE


def sampling_floor(accuracy: float, n: int) -> float:
    """SPREADS x the standard error of the difference of two accuracies on n digits,
    sqrt(2 p (1 - p) / n). Three seeds can land close together by chance (the default's
    three MNIST accuracies span 0.03 points: twice that is a quarter of this floor at
    n = 10,000), and a range that small is not the tolerance between machines; two models
    reading one test set differ less than two independent samples of it would, so this
    bounds the allowance from below."""
    return SPREADS * math.sqrt(2 * accuracy * (1 - accuracy) / n)


def compare(
    committed: Mapping[str, float],
    regenerated: Mapping[str, float],
    same_kind: bool,
    record: Mapping[str, Any] | None,
    sizes: Mapping[str, int] | None = None,
) -> list[str]:
    """Headline metrics outside what is allowed: exact on the same kind, else the spread
    (and at least :func:`sampling_floor` of each set's ``sizes`` where given)."""
    problems = []
    for name, old in committed.items():
        new = regenerated[name]
        allowed = 0.0 if same_kind else allowed_difference(record, name)
        if not same_kind and sizes and name in sizes:
            allowed = max(allowed, sampling_floor(old, sizes[name]))
        if abs(new - old) > allowed + 1e-12:
            problems.append(
                f"{name}: {old:.4f} committed, {new:.4f} now (|diff| {abs(new - old):.4f} > "
                f"{allowed:.4f} allowed{' on the same machine kind' if same_kind else ''})"
            )
    return problems


def check_reproduced() -> int:
    params = _params(REPO / "params.yaml")
    files = {"mnist": "reports/mnist/metrics.json", "class": "reports/class/metrics.json"}
    files |= {n: f"reports/external/{n}/metrics.json" for n in params.external}
    subprocess.run(["dvc", "metrics", "diff", "HEAD", "--md", "--all"], cwd=REPO, check=False)
    env_now = json.loads((REPO / "reports/train/environment.json").read_text(encoding="utf-8"))
    env_then = _git_json("reports/train/environment.json")
    same_kind = kind_agreement(env_now, env_then) == len(KIND_KEYS)
    seeds = [
        json.loads(p.read_text(encoding="utf-8")) for p in (REPO / "reports/seeds").glob("*.json")
    ]
    folder = json.loads((REPO / "reports/class/folder.json").read_text(encoding="utf-8"))
    record = spread_of(seeds, params, env_now, folder["digest"])
    committed_files = {n: _git_json(f) for n, f in files.items()}
    committed = headline(committed_files)
    sizes = {n: int(m["n"]) for n, m in committed_files.items()}
    regenerated = headline(
        {n: json.loads((REPO / f).read_text(encoding="utf-8")) for n, f in files.items()}
    )
    kind = ", ".join(f"{k} {env_now.get(k)}" for k in KIND_KEYS)
    print(f"\nthis machine: {kind}")
    if not same_kind:
        then = ", ".join(f"{k} {env_then.get(k)}" for k in KIND_KEYS)
        print(f"committed on: {then}")
        source = (
            f"{SPREADS}x the seed spread of `{record['name']}`"
            if record
            else f"the tolerance {TOLERANCE}"
        ) + f", or {SPREADS}x the sampling error of the difference where that is larger"
        print(f"another machine kind: headline accuracies may differ within {source}")
    for name in committed:
        print(f"  {name}: committed {committed[name]:.4f}, now {regenerated[name]:.4f}")
    problems = compare(committed, regenerated, same_kind, record, sizes)
    if same_kind:
        # Same kind: every metrics file, every number, identical.
        for path in [
            *files.values(),
            "reports/groups/metrics.json",
            "reports/leakage/metrics.json",
        ]:
            if json.loads((REPO / path).read_text(encoding="utf-8")) != _git_json(path):
                problems.append(f"{path} differs from the committed file")
    if problems:
        print("reports do not reproduce:", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print("reports reproduce" + (" exactly" if same_kind else " within the allowed spread"))
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("check", choices=["lock", "reproduced"])
    args = ap.parse_args()
    sys.exit(check_lock() if args.check == "lock" else check_reproduced())


if __name__ == "__main__":
    main()
