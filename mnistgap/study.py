"""Published numbers of the study, for side-by-side tables.

The study: Dorey, Harris, Gailey, Baartman, "Generalization of an MNIST Trained MLP to Real
Handwriting", December 2025 (developers have it at
``../shared/reference/mnist-mlp-generalization-report.md``). Stage 5 is its final model
(augmentation, early stopping, filter); stage 1 its baseline (no augmentation, no filter, no
early stopping). ``conf/preset/study.yaml`` is its stage 5 as a preset.
"""

from __future__ import annotations

# Section 6.1 / 6.2 and Figure 2 (lr 1e-3, batch 128). "~" values are as printed.
MNIST = {
    "stage1": {"accuracy": 0.97, "loss": 0.07},
    "stage5": {"accuracy": 0.98, "loss": 0.05},
}
CLASS = {
    "stage1": {"accuracy": 0.67, "loss": 1.71},
    "stage5": {"accuracy": 0.9283, "loss": 0.2337},
}
# Figure 2: class-digit results of the learning-rate comparison (all else stage 5).
LEARNING_RATES = {
    "1e-2": {"accuracy": 0.6199, "loss": 1.1868},
    "1e-3": {"accuracy": 0.9283, "loss": 0.2337},
    "1e-4": {"accuracy": 0.8972, "loss": 0.3164},
}
# Figure 11: per-group results, stage 1 (left) and stage 5 (right).
GROUPS = {
    "stage1": {
        "1": (0.4750, 2.0182, 40),
        "2": (0.7000, 1.5508, 30),
        "3": (0.6500, 1.7637, 40),
        "4": (0.7000, 1.2780, 40),
        "5": (1.0000, 0.0065, 40),
        "6": (0.8500, 0.7798, 40),
        "7": (0.5000, 3.4974, 20),
        "8": (0.4000, 4.5860, 30),
        "9": (0.7000, 1.0449, 10),
        "10": (0.6750, 1.6263, 40),
    },
    "stage5": {
        "1": (0.7742, 0.7368, 31),
        "2": (1.0000, 0.0347, 30),
        "3": (0.9250, 0.2212, 40),
        "4": (0.9750, 0.0499, 40),
        "5": (1.0000, 0.0162, 40),
        "6": (1.0000, 0.0175, 40),
        "7": (0.7000, 0.9879, 20),
        "8": (0.8667, 0.6596, 30),
        "9": (1.0000, 0.2203, 10),
        "10": (0.9231, 0.2541, 39),
    },
}


def is_study_collection(handed_in: dict[str, int]) -> bool:
    """Does a class folder hold the study's own collection (or a part of it)?

    ``handed_in`` maps each group id to the number of its digit files in the folder
    (usable or not: the study counted before its filter). The study names groups
    1-10 and gives how many digits each handed in (Figure 11, stage 1); a folder is taken
    for that collection when every group it holds is one of those ids with exactly that
    count. The bundled UCI sample (13 groups of 138-139) is not; the development groups
    1-5 (40, 30, 40, 40, 40) are. Only then do per-group rows compare like with like.
    """
    counts = {gid: n for gid, (_, _, n) in GROUPS["stage1"].items()}
    return bool(handed_in) and all(counts.get(g) == n for g, n in handed_in.items())


# Figure 7: MNIST test per-class mean loss (stage 5).
MNIST_PER_CLASS_LOSS = [0.01, 0.01, 0.03, 0.06, 0.04, 0.10, 0.03, 0.10, 0.09, 0.11]
