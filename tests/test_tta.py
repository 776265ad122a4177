"""Tests for mnistgap.tta: the test-time views and the averaged reading."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
import torch
from torch import nn

from mnistgap.metrics import predict_logits as plain_logits
from mnistgap.models import MLP
from mnistgap.params import Params, TestTimeViews
from mnistgap.tta import VIEWS, predict_logits, warp


def _bar(horizontal: bool) -> torch.Tensor:
    """One 28x28 uint8 image: a 2-px bar through the centre, 16 px long."""
    img = torch.zeros(1, 28, 28, dtype=torch.uint8)
    if horizontal:
        img[0, 13:15, 6:22] = 255
    else:
        img[0, 6:22, 13:15] = 255
    return img


class RecordingModel(nn.Module):
    """A fixed linear map from pixels to logits that remembers every batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.weight = nn.Parameter(torch.linspace(-1, 1, 10 * 784).reshape(784, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.flatten(1) @ self.weight


def test_views_are_the_params_choices_and_start_with_the_identity() -> None:
    assert tuple(VIEWS) == get_args(TestTimeViews)
    assert all(views[0] == (1.0, 0.0) for views in VIEWS.values())
    assert VIEWS["rot"] == ((1.0, 0.0), (1.0, 7.0), (1.0, -7.0))
    assert Params().tta == "rot"


def test_warp_identity_is_the_image_and_a_quarter_turn_stands_a_bar_up() -> None:
    bar = _bar(horizontal=True)
    np.testing.assert_array_equal(warp(bar, 1.0, 0.0)[:, 0].numpy(), bar.float().numpy() / 255)
    turned = warp(bar, 1.0, 90.0)[0, 0]
    rows = (turned > 0.5).any(dim=1).nonzero().squeeze(1)
    cols = (turned > 0.5).any(dim=0).nonzero().squeeze(1)
    # The bar now spans 16 rows and 2-3 columns around the centre.
    assert 15 <= len(rows) <= 17 and len(cols) <= 3
    assert (
        abs(float(rows.float().mean()) - 13.5) <= 1 and abs(float(cols.float().mean()) - 13.5) <= 1
    )
    upright = warp(_bar(horizontal=False), 1.0, 0.0)[0, 0]
    assert float((turned - upright).abs().max()) < 0.6  # same pixels, up to resampling
    # A zoom of 1.5 makes the bar 24 px long.
    longer = warp(bar, 1.5, 0.0)[0, 0]
    assert 23 <= int((longer > 0.5).any(dim=0).sum()) <= 25


def test_none_is_exactly_the_plain_reading() -> None:
    torch.manual_seed(0)
    model = MLP([32], 0.0).eval()
    images = torch.randint(0, 256, (50, 28, 28), dtype=torch.uint8)
    assert torch.equal(predict_logits(model, images, "none"), plain_logits(model, images))


def test_rot_is_the_log_of_the_mean_probability_over_the_three_views() -> None:
    model = RecordingModel().eval()
    images = torch.randint(0, 256, (7, 28, 28), dtype=torch.uint8)
    out = predict_logits(model, images, "rot")
    assert out.shape == (7, 10)
    # Each view went through the model once, normalised to [-1, 1].
    assert len(model.seen) == 3
    norm = lambda v: (v - 0.5) / 0.5  # noqa: E731
    for seen, (scale, deg) in zip(model.seen, VIEWS["rot"], strict=True):
        torch.testing.assert_close(seen, norm(warp(images, scale, deg)))
    with torch.no_grad():
        probs = torch.stack([torch.softmax(s.flatten(1) @ model.weight, 1) for s in model.seen])
        probs = probs.mean(0)
    torch.testing.assert_close(out.exp(), probs)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))
    # The rotated views really differ from the image: the reading is not the plain one.
    assert not torch.allclose(out.softmax(1), plain_logits(model, images).softmax(1))


def test_batches_do_not_change_the_reading() -> None:
    torch.manual_seed(1)
    model = MLP([16], 0.0).eval()
    images = torch.randint(0, 256, (33, 28, 28), dtype=torch.uint8)
    whole = predict_logits(model, images, "scale", batch_size=4096)
    torch.testing.assert_close(predict_logits(model, images, "scale", batch_size=5), whole)
    assert predict_logits(model, images[:0], "rot").shape == (0, 10)


def test_a_rotation_invariant_model_reads_the_same_with_views() -> None:
    """A model that sees only the total ink reads (almost) the same over rotations."""

    class Ink(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            ink = (x + 1).flatten(1).sum(1, keepdim=True) / 100
            return ink * torch.arange(10.0)

    disc = torch.zeros(1, 28, 28, dtype=torch.uint8)
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    disc[0][((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 36] = 255
    plain = plain_logits(Ink(), disc).log_softmax(1)
    torch.testing.assert_close(predict_logits(Ink(), disc, "rot"), plain, atol=0.05, rtol=0)


def test_unknown_views_are_refused() -> None:
    with pytest.raises(ValueError, match="tta must be one of none, rot, scale"):
        predict_logits(MLP([8], 0.0), torch.zeros(1, 28, 28, dtype=torch.uint8), "flip")
