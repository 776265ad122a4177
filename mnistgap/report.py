"""Render ``reports/report.md`` from the metrics files: plain GitHub-flavoured Markdown.

It says only what was computed: every number comes from a metrics file or the table beside
it, the seed-spread records (``reports/seeds/*.json``, written by ``scripts/seed_spread.py``)
or published figures: the study's (:mod:`mnistgap.study`) and the independent sets'
(:mod:`mnistgap.external`). Figures are linked relative to ``reports/`` so the report reads on
GitHub and offline.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from mnistgap import study
from mnistgap.class_folder import parse_name
from mnistgap.external import SETS
from mnistgap.groups import rank_groups
from mnistgap.params import Params, as_file_dict, validate
from mnistgap.settings import flatten

#: The bundled sample's folder: the presets' records on it stand in for a folder never measured.
_BUNDLED = Params().class_digits.dir
#: Up to this many groups the report lists every one; above, the worst and the best.
LIST_ALL_GROUPS = 20
WORST_LISTED, BEST_LISTED = 10, 5
#: Params that do not change what a seed-spread record measured (the seed itself varies; the
#: preset is the name of the settings, which are compared themselves).
_NOT_CONFIG = {"seed", "device", "eval_batch_size", "leakage", "preset"}
#: The other kind's architecture: an MLP has no channels, a CNN no hidden widths.
_UNUSED_BY = {"mlp": {"cnn_channels"}, "cnn": {"hidden"}}
#: What makes two machines one kind for the numbers (the keys of reports/train/environment.json
#: that :func:`mnistgap.device.environment` writes): runs of one commit on one kind are
#: bit-identical, runs on two kinds differ by their arithmetic.
KIND_KEYS = ("device", "processor", "isa", "precision", "threads", "torch")


def kind_agreement(a: Mapping[str, Any], b: Mapping[str, Any]) -> int:
    """On how many of :data:`KIND_KEYS` two recorded environments agree (all: the same kind)."""
    return sum(1 for k in KIND_KEYS if a.get(k) == b.get(k))


@dataclass(frozen=True)
class ReportInputs:
    """Everything the report reads: the parsed metrics files (headline numbers) and the tables
    beside them (:mod:`mnistgap.tables`)."""

    mnist: Mapping[str, Any]
    klass: Mapping[str, Any]
    #: groups.csv: {id: {accuracy, ci_low, ci_high, loss, n, flagged, without_flagged}}
    groups: Mapping[str, Mapping[str, Any]]
    #: groups/metrics.json: {groups, median_accuracy, worst_accuracy, below_90}
    group_spread: Mapping[str, Any]
    train: Mapping[str, Any]
    #: leakage/metrics.json ({n, flagged}) and what :func:`mnistgap.tables.read_leakage` says
    leakage: Mapping[str, Any]
    rejected: Sequence[tuple[str, str]]
    environment: Mapping[str, Any] = field(default_factory=dict)
    external: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seeds: Sequence[Mapping[str, Any]] = ()
    #: The mean loss per true digit: "mnist", "class" and each external set's name.
    per_class_loss: Mapping[str, Sequence[float | None]] = field(default_factory=dict)
    #: train/members.json: each member's seed, kept epoch and epochs run.
    members: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: class/folder.json: the class folder as given and its content digest.
    folder: Mapping[str, Any] = field(default_factory=dict)
    #: adapt/metrics.json: the out-of-fold reading adapted to the class, or {adapted: false,
    #: reason}; empty: no adapt stage ran.
    adapt: Mapping[str, Any] = field(default_factory=dict)
    #: adapt/groups.csv: {id: {n, fold, mnist_only_accuracy, accuracy, ci_low, ci_high}}
    adapt_groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: adapt/curve.csv: [{groups, digits, accuracy, ci_low, ci_high, n}]
    curve: Sequence[Mapping[str, Any]] = ()


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def _num(x: float | None, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(block: Mapping[str, Any]) -> str:
    if block.get("ci_low") is None:
        return "—"
    return f"{100 * block['ci_low']:.1f}–{100 * block['ci_high']:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def config_of(params: Mapping[str, Any], folder: str | None = None) -> dict[str, Any]:
    """What a seed-spread record must share with a run to be its spread: every param but the
    seed and those that cannot change the numbers, such as the other model kind's widths
    (params.yaml's dump in file order). With ``folder`` (its content digest, see
    :func:`mnistgap.class_folder.folder_digest`) the class folder is compared by content, not
    by where it lies."""
    unused = _NOT_CONFIG | _UNUSED_BY.get(params.get("model", ""), set())
    out = {k: v for k, v in params.items() if k not in unused}
    if folder is not None and "class_digits" in out:
        out["class_digits"] = {**out["class_digits"], "dir": folder}
    return out


def record_folder(record: Mapping[str, Any]) -> str | None:
    """The content digest of the class folder a seed-spread record was measured on."""
    return record.get("folder", {}).get("digest")


def _record_config(record: Mapping[str, Any], by_content: bool) -> dict[str, Any]:
    params = as_file_dict(validate(record["params"]))
    return config_of(params, record_folder(record) if by_content else None)


def spread_of(
    seeds: Sequence[Mapping[str, Any]],
    params: Params,
    environment: Mapping[str, Any] | None = None,
    folder: str | None = None,
) -> Mapping[str, Any] | None:
    """The seed-spread record of this run's configuration, if one was measured: the same
    settings (a record's params completed with the defaults of keys added after it was
    measured) on the same class folder, by content where ``folder`` (this run's digest) is
    given, else by path. Where one configuration was measured on several machine kinds, the
    record whose ``environment`` agrees most with this run's is its spread (ties: the first by
    name)."""
    wanted = config_of(as_file_dict(params), folder)
    matches = sorted(
        (s for s in seeds if _record_config(s, folder is not None) == wanted),
        key=lambda s: s["name"],
    )
    env = environment or {}
    return max(matches, key=lambda s: kind_agreement(s.get("environment", {}), env), default=None)


def preset_records(
    seeds: Sequence[Mapping[str, Any]],
    folder: str | None,
    environment: Mapping[str, Any] | None = None,
) -> dict[str, Mapping[str, Any]]:
    """The record of each preset as it stands (its settings are the preset's alone, ``set``
    names nothing but the preset and the folder), on the class folder of digest ``folder``,
    measured on the machine kind closest to ``environment``; keyed by preset, in name order."""
    env = environment or {}
    out: dict[str, Mapping[str, Any]] = {}
    for rec in sorted(seeds, key=lambda s: s["name"]):
        name = rec.get("params", {}).get("preset")
        if not name or set(rec.get("set", {})) - {"preset", "class_digits.dir"}:
            continue
        if record_folder(rec) != folder:
            continue
        best = out.get(name)
        agree = kind_agreement(rec.get("environment", {}), env)
        if best is None or agree > kind_agreement(best.get("environment", {}), env):
            out[name] = rec
    return dict(sorted(out.items()))


def preset_settings(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a record's configuration sets beside the defaults (dotted keys), leaving out
    the seed, the preset's name and the folder: a preset's recipe, read off its record."""
    ours = flatten(as_file_dict(validate(record["params"])))
    base = flatten(as_file_dict(Params()))
    skip = {"seed", "preset", "class_digits.dir"}
    return {k: v for k, v in ours.items() if k not in skip and base.get(k) != v}


#: How the report names the readings of the model adapted to the class.
ADAPTED = "adapted to this class (out-of-fold)"


def adapted(r: ReportInputs) -> bool:
    """Whether stage adapt adapted the model (its metrics hold an out-of-fold accuracy)."""
    return r.adapt.get("accuracy") is not None


def _spread_cell(record: Mapping[str, Any] | None, metric: str) -> str:
    values = [r[metric] for r in record["runs"] if r.get(metric) is not None] if record else []
    if not values:
        return "—"
    mean = sum(values) / len(values)
    return f"{_pct(mean)} ({_pct(min(values))}–{_pct(max(values))}, {len(values)} seeds)"


def _handed_in(groups: Mapping[str, Any], rejected: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Digit files per group: the usable ones plus those rejected for their content (a
    digit file that cannot be read or fails the filter was still handed in)."""
    counts = {gid: int(block["n"]) for gid, block in groups.items()}
    for file, reason in rejected:
        if reason.startswith("duplicate of"):
            continue
        try:
            gid = str(parse_name(file).group)
        except ValueError:
            continue
        counts[gid] = counts.get(gid, 0) + 1
    return counts


def _cross_dataset(r: ReportInputs, params: Params, same_collection: bool) -> list[str]:
    record = spread_of(r.seeds, params, r.environment, r.folder.get("digest"))
    wf = r.klass.get("without_flagged", {})
    g = r.groups
    folder = f"class folder `{params.class_digits.dir}`"
    rows = [
        [
            "MNIST test",
            f"{r.mnist['n']:,}",
            "not published (none of MNIST's training writers)",
            f"{_pct(r.mnist['accuracy'])} [{_ci(r.mnist)}]",
            _num(r.mnist["loss"]),
            _spread_cell(record, "mnist"),
            "the study ~98% (loss ~0.05)",
        ],
        [
            folder,
            f"{r.klass['n']:,}",
            f"{len(g)} groups",
            f"{_pct(r.klass['accuracy'])} [{_ci(r.klass)}]",
            _num(r.klass["loss"]),
            _spread_cell(record, "class"),
            "the study 92.83% (loss 0.2337) on its own collection" if same_collection else "—",
        ],
        [
            f"{folder}, without MNIST look-alikes",
            f"{wf.get('n', 0):,}",
            f"{len(g)} groups",
            f"{_pct(wf.get('accuracy'))} [{_ci(wf)}]",
            "—",
            _spread_cell(record, "class_without_flagged"),
            "—",
        ],
    ]
    if adapted(r):
        a, awf = r.adapt, r.adapt.get("without_flagged", {})
        rows[2:2] = [
            [
                f"{folder}, **{ADAPTED}**",
                f"{a['n']:,}",
                f"{len(g)} groups",
                f"{_pct(a['accuracy'])} [{_ci(a)}]",
                _num(a["loss"]),
                _spread_cell(record, "adapted"),
                "—",
            ]
        ]
        rows.append(
            [
                f"{folder}, without MNIST look-alikes, **{ADAPTED}**",
                f"{awf.get('n', 0):,}",
                f"{len(g)} groups",
                f"{_pct(awf.get('accuracy'))} [{_ci(awf)}]",
                "—",
                "—",
                "—",
            ]
        )
    for name, m in r.external.items():
        s = SETS[name]
        rows.append(
            [
                s.title,
                f"{m['n']:,}",
                s.writers,
                f"{_pct(m['accuracy'])} [{_ci(m)}]",
                _num(m["loss"]),
                _spread_cell(record, name),
                "; ".join(f"{what}: {acc}" for what, acc in s.published) or "—",
            ]
        )
    out = [
        "## Every evaluation set\n",
        _table(
            [
                "set",
                "n",
                "writers",
                "accuracy [95% interval]",
                "loss",
                "over seeds: mean (min–max)",
                "published points",
            ],
            rows,
        ),
    ]
    if record is None:
        out.append(
            "\nNo seed spread is recorded for this configuration: one seed's accuracy is one "
            "draw, so compare runs against the intervals, or measure the spread with "
            "`python scripts/seed_spread.py` (see CONTRIBUTING.md).\n"
        )
    else:
        env = record.get("environment", {})
        out.append(
            f"\nOver seeds: the same configuration trained with seeds "
            f"{', '.join(str(x['seed']) for x in record['runs'])} (`{record['name']}` in "
            f"`reports/seeds/`, measured on {env.get('processor', '?')}, "
            f"{env.get('isa', '?')}, {env.get('precision', '?')}).\n"
        )
    e = params.label_smoothing
    if e:
        sure = 1 - e + e / 10  # the smoothed target's probability of the label, 10 digits
        out.append(
            f"Losses are plain cross-entropy. Trained with label smoothing {e:g}, the model "
            f"gives a digit it is sure of probability {sure:.2f}, not 1: even a right answer "
            f"costs {-math.log(sure):.3f}, so compare losses only between runs with the same "
            "`label_smoothing`.\n"
        )
    return out


def _training_sentence(
    train: Mapping[str, Any],
    members: Mapping[str, Mapping[str, Any]],
    label_smoothing: float = 0.0,
) -> str:
    """What training kept: the epoch of one model, or each member of an ensemble. The
    validation loss is training's: label-smoothed where training smoothed."""
    smoothed = f" (label smoothing {label_smoothing:g})" if label_smoothing else ""
    val = (
        f"validation loss{smoothed} {_num(train.get('best_val_loss'))}, accuracy "
        f"{_pct(train.get('best_val_acc'))}"
    )
    if len(members) <= 1:
        return (
            f"Training kept epoch {train.get('best_epoch')} of {train.get('epochs_run')} "
            f"(best {val})."
        )
    kept = "; ".join(
        f"seed {m['seed']}: epoch {m['best_epoch']} of {m['epochs_run']}" for m in members.values()
    )
    return (
        f"An ensemble of {len(members)} models, their probabilities averaged "
        f"({val}); each member kept ({kept})."
    )


def _presets_section(r: ReportInputs) -> list[str]:
    """Each preset's three-seed record on this run's class folder (or, where none was measured
    on it, on the bundled sample) beside the others: what it sets and what it reads."""
    folder = r.folder.get("digest")
    records = preset_records(r.seeds, folder, r.environment)
    where = "this class folder"
    if not records:
        bundled = [s for s in r.seeds if s["params"]["class_digits"]["dir"] == _BUNDLED]
        records = preset_records(bundled, record_folder(bundled[0]) if bundled else None)
        where = f"the bundled sample `{_BUNDLED}` (no preset was measured on this folder)"
    if not records:
        return []
    sets = list(r.external)
    metrics = {"mnist": "MNIST test", "class": "class folder"} | {
        name: SETS[name].title for name in sets
    }
    rows = []
    for name, rec in records.items():
        env = rec.get("environment", {})
        settings = " ".join(f"`{k}={_flow(v)}`" for k, v in preset_settings(rec).items())
        rows.append(
            [
                f"`{name}`",
                settings or "the defaults",
                *[_spread_cell(rec, m) for m in metrics],
                f"`{rec['name']}`: {env.get('processor', '?')} ({env.get('isa', '?')}, "
                f"{env.get('precision', '?')})",
            ]
        )
    return [
        "## Presets\n",
        f"Each preset (`dvc exp run -S preset=NAME`) trained with seeds 1–3 on {where}: mean "
        "(min–max) accuracy. Differences smaller than these ranges are not evidence.\n",
        _table(["preset", "sets", *metrics.values(), "record: machine"], rows),
        "",
    ]


def _flow(value: Any) -> str:
    """A setting's value as `-S` writes it: lists without spaces, booleans lower-case."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "[" + ",".join(_flow(v) for v in value) + "]"
    return str(value)


def _groups_section(
    g: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any],
    adapt_groups: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    ag = adapt_groups or {}

    def row(gid: str) -> list[str]:
        b = g[gid]
        wf = b.get("without_flagged", {})
        cells = [
            gid,
            _pct(b["accuracy"]),
            _ci(b),
            _num(b["loss"]),
            str(b["n"]),
            f"{_pct(wf.get('accuracy'))} ({wf.get('n', 0)})",
        ]
        if ag:
            a = ag.get(gid, {})
            cells.append(f"{_pct(a.get('accuracy'))} [{_ci(a)}]")
        return cells

    header = ["group", "accuracy", "95% interval", "loss", "n", "without look-alikes (n)"]
    if ag:
        header.append(f"{ADAPTED} [95% interval]")
    sizes = sorted({b["n"] for b in g.values()})
    size = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
    width = statistics.median(b["ci_high"] - b["ci_low"] for b in g.values())
    best = max(b["accuracy"] for b in g.values())
    out = ["## Per group\n"]
    out.append(
        f"{len(g)} groups of {size} digits; median group accuracy "
        f"{_pct(summary.get('median_accuracy'))} (from {_pct(summary.get('worst_accuracy'))} to "
        f"{_pct(best)}), {summary.get('below_90', 0)} below 90%. "
        f"The median group's 95% interval is {100 * width:.1f} points wide: read differences "
        "between groups against their intervals.\n"
    )
    ranked = rank_groups(g)
    if len(g) <= LIST_ALL_GROUPS:
        out.append(_table(header, [row(gid) for gid in sorted(g, key=_group_key)]))
    else:
        worst, best = ranked[:WORST_LISTED], ranked[-BEST_LISTED:][::-1]
        out.append(f"The {len(worst)} worst groups:\n")
        out.append(_table(header, [row(gid) for gid in worst]))
        out.append(f"\nThe {len(best)} best groups:\n")
        out.append(_table(header, [row(gid) for gid in best]))
        out.append(f"\nAll {len(g)} groups: [`groups/groups.csv`](groups/groups.csv).")
    out.append("\n![every group's accuracy, sorted, and their distribution](groups/groups.png)\n")
    out.append("![accuracy per group and digit](groups/group_digit_accuracy.png)\n")
    return out


def _group_key(gid: str) -> tuple[int, str]:
    return (int(gid), "") if gid.isdigit() else (-1, gid)


def render_report(r: ReportInputs, params: Params) -> str:
    """The whole report as a Markdown string (deterministic for the same inputs)."""
    g = r.groups
    env = r.environment
    same_collection = study.is_study_collection(_handed_in(g, r.rejected))
    out: list[str] = ["# MNIST → real handwriting: pipeline report\n"]
    out.append(
        "Regenerated by `dvc repro` (stage `report`) from the metrics files under `reports/`. "
        f"Preset **{params.preset}**: model {params.model}"
        f"{f' (an ensemble of {params.ensemble})' if params.ensemble > 1 else ''}, class "
        f"digits from `{params.class_digits.dir}` "
        f"(preprocessing `{params.class_digits.preprocess}`, filter "
        f"{'on' if params.filter.enabled else 'off'}). Trained on "
        f"{env.get('processor', 'an unrecorded machine')} ({env.get('isa', '?')}, "
        f"{env.get('threads', '?')} threads) in {env.get('precision', '?')}, torch "
        f"{env.get('torch', '?')}. Intervals are 95% Wilson score intervals.\n"
    )
    out += _cross_dataset(r, params, same_collection)
    out.append(
        f"{_training_sentence(r.train, r.members, params.label_smoothing)} "
        f"{len(r.rejected)} entries of the class folder were not used (see "
        "[`class/rejected.csv`](class/rejected.csv)).\n"
    )
    out += _presets_section(r)

    out.append("## The study vs this run\n")
    rows = [
        [
            "MNIST test accuracy",
            _pct(study.MNIST["stage5"]["accuracy"]) + " (~)",
            _pct(r.mnist["accuracy"]),
        ],
        [
            "MNIST test loss",
            _num(study.MNIST["stage5"]["loss"], 2) + " (~)",
            _num(r.mnist["loss"]),
        ],
        [
            "class digits accuracy",
            _pct(study.CLASS["stage5"]["accuracy"]),
            _pct(r.klass["accuracy"]),
        ],
        ["class digits loss", _num(study.CLASS["stage5"]["loss"]), _num(r.klass["loss"])],
    ]
    if same_collection:
        ref_groups = study.GROUPS["stage5"]
        for gid in sorted(g, key=int):
            ref, ours = ref_groups[gid], g[gid]
            rows.append(
                [
                    f"group {gid} accuracy (n)",
                    f"{_pct(ref[0])} ({ref[2]})",
                    f"{_pct(ours['accuracy'])} ({ours['n']})",
                ]
            )
    out.append(_table(["", "the study (stage 5)", "this run"], rows))
    out.append(
        (
            "\nThis folder holds the study's own collection (each group has the number of "
            "digits the study reports for it), so its groups are compared one by one.\n"
        )
        if same_collection
        else (
            f"\nThe class digits in `{params.class_digits.dir}` are not the study's "
            "collection (its groups 1–10 and their sizes do not match), so only overall "
            "figures are compared.\n"
        )
    )

    out.append("## MNIST test set\n")
    out.append("Mean loss per true digit (the study's Figure 7 in the second row):\n")
    out.append(
        _table(
            [str(d) for d in range(10)],
            [
                [_num(v, 3) for v in r.per_class_loss["mnist"]],
                [f"{v:.2f}" for v in study.MNIST_PER_CLASS_LOSS],
            ],
        )
    )
    out.append("\n![MNIST confusion matrix](mnist/confusion.png)\n")

    out.append("## Class digits\n")
    out.append("Mean loss per true digit:\n")
    out.append(
        _table(
            [str(d) for d in range(10)],
            [[_num(v, 3) for v in r.per_class_loss["class"]]],
        )
    )
    out.append("\n![class confusion matrix](class/confusion.png)\n")
    out.append("![misclassified class digits](class/misclassified.png)\n")

    out += _groups_section(g, r.group_spread, r.adapt_groups if adapted(r) else None)
    out += _adapt_section(r)

    if r.external:
        out.append("## Independent sets\n")
        out.append(
            "Read with the class digits' recipe and evaluated only (training never sees them). "
            "Mean loss per true digit:\n"
        )
        out.append(
            _table(
                ["set", *[str(d) for d in range(10)]],
                [
                    [SETS[name].title] + [_num(v, 3) for v in r.per_class_loss[name]]
                    for name in r.external
                ],
            )
        )
        out.append("")
        for name in r.external:
            out.append(f"![{SETS[name].title} confusion matrix](external/{name}/confusion.png)\n")

    out.append("## Leakage check\n")
    by_reason = {k: r.leakage["by_reason"].get(k, 0) for k in ("distance", "ratio", "both")}
    flagged_groups = dict(sorted(r.leakage["by_group"].items(), key=lambda kv: _group_key(kv[0])))
    out.append(
        f"{r.leakage.get('flagged', 0)} of {r.leakage.get('n', 0)} class digits are flagged as "
        "probable copies of an MNIST training image. After the same preprocessing of both "
        "sides, a digit is flagged when its RMS distance to the nearest training image is "
        f"below {params.leakage.threshold} (an almost unchanged copy) or when the ratio of "
        "that distance to the distance of the second-nearest training image is below "
        f"{params.leakage.ratio_threshold} (a degraded copy, e.g. binarised, is still far "
        "closer to its original than to any other image). Both thresholds were calibrated "
        "on genuine new handwriting, the MNIST test digits "
        "(`benchmarks/leakage_calibration.py`). "
        f"Median nearest distance {_num(r.leakage.get('median_distance'))}, median ratio "
        f"{_num(r.leakage.get('median_ratio'), 3)}. Flagged by reason: "
        + (", ".join(f"{k}: {v}" for k, v in by_reason.items()) or "none")
        + "; groups with flagged digits: "
        + (", ".join(f"{k}: {v}" for k, v in flagged_groups.items()) or "none")
        + ". See [`leakage/leakage.csv`](leakage/leakage.csv).\n"
    )
    out.append("![flagged pairs](leakage/flagged_pairs.png)\n")

    if r.rejected:
        out.append("## Rejected entries\n")
        shown = list(r.rejected[:50])
        out.append(_table(["file", "reason"], [[f"`{f}`", why] for f, why in shown]))
        if len(r.rejected) > len(shown):
            out.append(f"\n… and {len(r.rejected) - len(shown)} more in `class/rejected.csv`.")
        out.append("")

    out.append("## Training curves\n")
    out.append(
        "Per-epoch losses and accuracies are in `train/plots/metrics/` "
        "(`dvc plots show` draws them).\n"
    )
    out.append("## Parameters used\n")
    out.append(
        "```yaml\n" + yaml.safe_dump(as_file_dict(params), sort_keys=False).rstrip() + "\n```\n"
    )
    return "\n".join(out)


def _adapt_section(r: ReportInputs) -> list[str]:
    """What the class's own digits close: the trained model fine-tuned on other groups' digits
    (stage adapt), read on the groups it never saw, beside the MNIST-only model."""
    if not r.adapt:
        return []
    out = ["## Adapted to this class\n"]
    if not adapted(r):
        out.append(f"Not adapted: {r.adapt.get('reason', 'no reason recorded')}.\n")
        return out
    a = r.adapt
    wf = a.get("without_flagged", {})
    out.append(
        "Every row above labelled *adapted* reads each class digit with the trained model "
        "fine-tuned on the class digits of the *other* groups (folds over groups, mixed with "
        "MNIST training digits, stage `adapt`): no group is read by a model that saw its "
        "writers. Every other row, and the comparison with the study, is the MNIST-only model. "
        f"Out-of-fold: {_pct(a['accuracy'])} [{_ci(a)}] against the MNIST-only model's "
        f"{_pct(a.get('mnist_only_accuracy'))} on the same {a['n']:,} digits; without MNIST "
        f"look-alikes {_pct(wf.get('accuracy'))} (n={wf.get('n', 0):,}). The model adapted on "
        f"every group (`models/adapted.pt`: `mnistgap-predict --model models/adapted.pt`) reads "
        f"MNIST test {_pct(a.get('mnist_accuracy'))} (the MNIST-only model: "
        f"{_pct(r.mnist.get('accuracy'))}).\n"
    )
    if r.adapt_groups:
        rows = [
            [
                gid,
                str(b["n"]),
                str(b["fold"]),
                _pct(b["mnist_only_accuracy"]),
                f"{_pct(b['accuracy'])} [{_ci(b)}]",
            ]
            for gid, b in sorted(r.adapt_groups.items(), key=lambda kv: _group_key(kv[0]))
        ]
        out.append("Per group, MNIST-only vs adapted (out-of-fold):\n")
        out.append(_table(["group", "n", "fold", "MNIST-only", f"{ADAPTED} [95% interval]"], rows))
        out.append("")
    if r.curve:
        out.append(
            "How many groups it takes: each held-out group read by its fold's model adapted on "
            "this many of the other groups (the mean over the folds; 0 = MNIST only), stage "
            "`adapt_curve`:\n"
        )
        out.append(
            _table(
                ["other groups", "their digits", "accuracy [95% interval]", "n"],
                [
                    [
                        f"{p['groups']:g}",
                        f"{p['digits']:.0f}",
                        f"{_pct(p['accuracy'])} [{_ci(p)}]",
                        str(p["n"]),
                    ]
                    for p in r.curve
                ],
            )
        )
        out.append("\n![learning curve](adapt/curve.png)\n")
    out.append("![adapted confusion matrix, out-of-fold](adapt/confusion.png)\n")
    return out
