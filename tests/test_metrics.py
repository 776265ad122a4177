"""Tests for mnistgap.metrics on hand-made logits and labels (values checked by hand)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mnistgap.metrics import (
    Evaluation,
    confusion_matrix,
    evaluate_logits,
    group_digit_accuracy,
    group_summaries,
    per_class_loss,
    predict_logits,
    predictions_csv,
    summary,
    wilson_interval,
    without_loss,
)

# Six images; predictions 0, 1, 1, 2, 0, 2 against labels 0, 1, 2, 2, 1, 2 -> 4 correct.
LABELS = np.array([0, 1, 2, 2, 1, 2])
PREDS = np.array([0, 1, 1, 2, 0, 2])


def _logits() -> torch.Tensor:
    logits = torch.full((6, 10), -2.0)
    strength = [3.0, 2.0, 1.0, 4.0, 0.5, 2.5]
    for i, (p, s) in enumerate(zip(PREDS, strength, strict=True)):
        logits[i, p] = s
    return logits


def test_evaluate_logits_predictions_losses_confidence() -> None:
    logits = _logits()
    ev = evaluate_logits(logits, LABELS)
    np.testing.assert_array_equal(ev.preds, PREDS)
    np.testing.assert_array_equal(ev.labels, LABELS)
    assert ev.preds.dtype == np.int64 and ev.losses.dtype == np.float64
    expected = F.cross_entropy(logits, torch.as_tensor(LABELS), reduction="none").double().numpy()
    np.testing.assert_allclose(ev.losses, expected, rtol=1e-6)
    # Hand-computed first row: loss of class 0 when its logit is 3 and nine others are -2.
    assert ev.losses[0] == pytest.approx(-math.log(math.exp(3) / (math.exp(3) + 9 * math.exp(-2))))
    np.testing.assert_allclose(ev.confidence, logits.softmax(1).max(1).values.double().numpy())


def test_summary_accuracy_and_mean_loss() -> None:
    logits = _logits()
    ev = evaluate_logits(logits, LABELS)
    s = summary(ev)
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["n"] == 6
    assert s["loss"] == pytest.approx(
        F.cross_entropy(logits, torch.as_tensor(LABELS)).item(), rel=1e-6
    )
    assert (s["ci_low"], s["ci_high"]) == pytest.approx(wilson_interval(4, 6))
    assert s["ci_low"] < s["accuracy"] < s["ci_high"]


def test_summary_of_nothing() -> None:
    empty = Evaluation(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, float, float)))
    assert summary(empty) == {"accuracy": None, "ci_low": 0.0, "ci_high": 1.0, "loss": None, "n": 0}


def test_per_class_loss_by_hand() -> None:
    losses = np.array([1.0, 2.0, 3.0, 5.0, 4.0, 7.0])
    out = per_class_loss(LABELS, losses)
    assert len(out) == 10
    assert out[0] == 1.0
    assert out[1] == pytest.approx((2.0 + 4.0) / 2)
    assert out[2] == pytest.approx((3.0 + 5.0 + 7.0) / 3)
    assert out[3:] == [None] * 7  # no image of these classes


def test_headline_blocks_hold_no_per_digit_numbers() -> None:
    block = summary(evaluate_logits(_logits(), LABELS))
    assert set(block) == {"accuracy", "ci_low", "ci_high", "loss", "n"}
    assert block["accuracy"] == pytest.approx(4 / 6) and block["n"] == 6
    assert without_loss(block) == {k: block[k] for k in ("accuracy", "ci_low", "ci_high", "n")}


def test_confusion_matrix_by_hand() -> None:
    cm = confusion_matrix(LABELS, PREDS)
    expected = np.zeros((10, 10), dtype=np.int64)
    expected[0, 0] = 1  # actual 0 -> predicted 0
    expected[1, 1] = 1
    expected[1, 0] = 1  # actual 1 -> predicted 0 (rows actual, columns predicted)
    expected[2, 1] = 1
    expected[2, 2] = 2
    np.testing.assert_array_equal(cm, expected)
    assert cm.sum() == 6 and np.trace(cm) == 4
    assert confusion_matrix(np.array([0, 2]), np.array([1, 2]), k=3).tolist() == [
        [0, 1, 0],
        [0, 0, 0],
        [0, 0, 1],
    ]


def test_predictions_csv() -> None:
    ev = evaluate_logits(_logits(), LABELS)
    text = predictions_csv(ev)
    lines = text.splitlines()
    assert lines[0] == "actual,predicted"
    assert lines[1:] == [f"{a},{p}" for a, p in zip(LABELS, PREDS, strict=True)]
    assert text.endswith("\n")


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (5, 10, 0.2366, 0.7634),
        (93, 100, 0.8625, 0.9657),
    ],
)
def test_wilson_interval_known_values(k: int, n: int, low: float, high: float) -> None:
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-3)


def test_wilson_interval_without_data() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_is_symmetric_and_narrows_with_n() -> None:
    lo, hi = wilson_interval(3, 10)
    lo2, hi2 = wilson_interval(7, 10)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    assert wilson_interval(300, 1000)[1] - wilson_interval(300, 1000)[0] < hi - lo


def _group_eval() -> tuple[Evaluation, np.ndarray]:
    labels = np.array([0, 0, 1, 1, 2, 3, 3, 0])
    preds = np.array([0, 1, 1, 1, 2, 3, 0, 0])
    groups = np.array([10, 10, 2, 2, 2, 1, 1, 1])
    losses = np.arange(1.0, 9.0)
    ev = Evaluation(labels, preds, losses, np.full(8, 0.5))
    return ev, groups


def test_group_summaries() -> None:
    ev, groups = _group_eval()
    out = group_summaries(ev, groups)
    assert list(out) == ["1", "2", "10"]  # numeric order, string keys (JSON)
    assert out["1"]["n"] == 3 and out["1"]["accuracy"] == pytest.approx(2 / 3)
    assert out["1"]["loss"] == pytest.approx((6 + 7 + 8) / 3)
    assert out["2"]["n"] == 3 and out["2"]["accuracy"] == 1.0
    assert out["2"]["loss"] == pytest.approx((3 + 4 + 5) / 3)
    assert out["10"]["n"] == 2 and out["10"]["accuracy"] == 0.5
    assert (out["10"]["ci_low"], out["10"]["ci_high"]) == pytest.approx(wilson_interval(1, 2))
    assert set(out["1"]) == {"accuracy", "ci_low", "ci_high", "loss", "n"}


def test_group_digit_accuracy_matrix() -> None:
    ev, groups = _group_eval()
    ids, acc = group_digit_accuracy(ev, groups)
    assert ids == ["1", "2", "10"]
    assert acc.shape == (3, 10)
    assert acc[0, 0] == 1.0 and acc[0, 3] == 0.5  # group 1: digit 0 right, digit 3 1 of 2
    assert acc[1, 1] == 1.0 and acc[1, 2] == 1.0
    assert acc[2, 0] == 0.5  # group 10: digit 0 once right, once wrong
    filled = {(0, 0), (0, 3), (1, 1), (1, 2), (2, 0)}
    for i in range(3):
        for j in range(10):
            assert np.isnan(acc[i, j]) == ((i, j) not in filled), (i, j)


def test_evaluation_subset() -> None:
    ev, _ = _group_eval()
    mask = np.array([True, False, True, False, False, False, True, True])
    sub = ev.subset(mask)
    np.testing.assert_array_equal(sub.labels, [0, 1, 3, 0])
    np.testing.assert_array_equal(sub.preds, [0, 1, 0, 0])
    np.testing.assert_array_equal(sub.losses, [1.0, 3.0, 7.0, 8.0])
    assert len(sub.confidence) == 4
    assert summary(sub)["accuracy"] == 0.75


def test_predict_logits_batches_match_one_pass() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    images = torch.randint(0, 256, (23, 28, 28), dtype=torch.uint8)
    a = predict_logits(model, images, batch_size=5)
    b = predict_logits(model, images, batch_size=100)
    assert a.shape == (23, 10) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert predict_logits(model, images[:0]).shape == (0, 10)
