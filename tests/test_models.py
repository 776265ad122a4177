"""Tests for mnistgap.models: architecture, input scaling and safe self-describing checkpoints."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from mnistgap.models import (
    CNN,
    MLP,
    Ensemble,
    build_model,
    load_checkpoint,
    members,
    save_checkpoint,
)
from mnistgap.params import ModelParams
from mnistgap.recipe import normalize


class NotAllowed:
    """An arbitrary class: weights_only loading must refuse to build it from a pickle."""

    def __init__(self) -> None:
        self.payload = "would run code on load"


def _batch(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randint(
        0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def test_mlp_output_shape_from_both_input_layouts() -> None:
    torch.manual_seed(0)
    model = build_model(ModelParams(model="mlp")).eval()
    x = normalize(_batch())
    assert x.shape == (5, 1, 28, 28)
    out4 = model(x)
    out3 = model(x.squeeze(1))  # (B, 28, 28) float input works too: Flatten handles both
    assert out4.shape == (5, 10) and out3.shape == (5, 10)
    torch.testing.assert_close(out3, out4)


def test_default_mlp_has_the_reports_parameter_count() -> None:
    model = build_model(ModelParams(model="mlp"))
    assert isinstance(model, MLP)
    # 784*512 + 512 + 512*256 + 256 + 256*128 + 128 + 128*10 + 10, the study's Figure 1
    assert sum(p.numel() for p in model.parameters()) == 567_434
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(784, 512), (512, 256), (256, 128), (128, 10)]


def test_mlp_dropout_layers() -> None:
    model = build_model(ModelParams(model="mlp"))
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 3 and all(d.p == 0.2 for d in drops)
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 3


def test_mlp_custom_widths() -> None:
    model = build_model(ModelParams(model="mlp", hidden=[16], dropout=0.5))
    assert sum(p.numel() for p in model.parameters()) == 784 * 16 + 16 + 16 * 10 + 10
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.5]


def test_mlp_dropout_only_in_train_mode() -> None:
    torch.manual_seed(0)
    model = build_model(ModelParams(model="mlp"))
    x = normalize(_batch())
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_cnn_output_shape() -> None:
    torch.manual_seed(0)
    model = build_model(ModelParams(model="cnn", cnn_channels=[4, 8])).eval()
    assert isinstance(model, CNN)
    x = normalize(_batch(3))
    assert model(x).shape == (3, 10)
    assert model(x.squeeze(1)).shape == (3, 10)  # (B, 28, 28) gets its channel axis
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [4, 8]  # one 3x3 conv per block
    assert [c.stride for c in convs] == [(2, 2), (2, 2)]  # each halves the image
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    last = next(m for m in model.modules() if isinstance(m, nn.Linear))
    assert last.in_features == 8 * 7 * 7  # 28 -> 14 -> 7
    three = build_model(ModelParams(model="cnn", cnn_channels=[4, 8, 16]))
    assert next(m for m in three.modules() if isinstance(m, nn.Linear)).in_features == 16 * 4 * 4


def test_checkpoint_with_an_unknown_model_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        build_model(ModelParams(model="mlp", hidden=[8])),
        ModelParams(model="mlp", hidden=[8]),
    )
    ckpt = torch.load(path, weights_only=True)
    ckpt["model_config"]["model"] = "resnet"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"bad model_config: .*'mlp' or 'cnn'"):
        load_checkpoint(path)


def test_normalize_maps_the_pixel_range_to_minus_one_one() -> None:
    x = torch.tensor([[[0, 255] + [128] * 26] * 28], dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32 and y.shape == (1, 1, 28, 28)
    assert y[0, 0, 0, 0].item() == -1.0 and y[0, 0, 0, 1].item() == 1.0
    assert y[0, 0, 0, 2].item() == pytest.approx(128 / 255 * 2 - 1, abs=1e-6)
    # float input is taken as already in [0, 1]
    f = normalize(torch.tensor([[[0.0, 0.5, 1.0]]]))
    assert f.flatten().tolist() == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize(
    "cfg",
    [ModelParams(model="mlp", hidden=[32, 16]), ModelParams(model="cnn", cnn_channels=[4, 8])],
)
def test_checkpoint_round_trip(tmp_path: Path, cfg: ModelParams) -> None:
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    if cfg.model == "cnn":  # non-trivial BatchNorm buffers must survive too
        model.train()
        model(normalize(_batch(8, seed=3)))
        model.eval()
    path = tmp_path / "m" / "model.pt"
    save_checkpoint(path, model, cfg, extra={"best_epoch": 3})
    loaded, ckpt = load_checkpoint(path)
    assert not loaded.training
    x = normalize(_batch(4, seed=2))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert ckpt["model_config"] == cfg.model_dump()
    assert ckpt["extra"] == {"best_epoch": 3}
    assert ckpt["preprocessing"]["norm_mean"] == 0.5 and ckpt["preprocessing"]["norm_std"] == 0.5
    assert ckpt["preprocessing"]["image_size"] == 28


def test_checkpoint_loads_with_plain_weights_only(tmp_path: Path) -> None:
    cfg = ModelParams(model="mlp", hidden=[8])
    model = build_model(cfg)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, cfg)
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["format"] == "mnistgap-checkpoint-v2"
    assert {"state_dict", "model_config", "preprocessing", "extra"} <= set(ckpt)
    assert set(ckpt["state_dict"]) == set(model.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())


def test_load_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(ValueError, match="not a mnistgap checkpoint"):
        load_checkpoint(path)
    path2 = tmp_path / "sd.pt"
    torch.save(
        build_model(ModelParams(model="mlp", hidden=[8])).state_dict(), path2
    )  # a bare state_dict
    with pytest.raises(ValueError, match="not a mnistgap checkpoint"):
        load_checkpoint(path2)


def test_load_checkpoint_rejects_other_preprocessing(tmp_path: Path) -> None:
    cfg = ModelParams(model="mlp", hidden=[8])
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model(cfg), cfg)
    ckpt = torch.load(path, weights_only=True)
    ckpt["preprocessing"]["norm_mean"] = 0.1307
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="preprocessing"):
        load_checkpoint(path)


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": "mnistgap-checkpoint-v2", "x": NotAllowed()}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)


def test_ensemble_members_are_the_seeds_models_and_average_their_probabilities(
    tmp_path: Path,
) -> None:
    one = ModelParams(model="cnn", cnn_channels=[4, 8])
    model = build_model(one.model_copy(update={"ensemble": 3}), seed=10)
    assert isinstance(model, Ensemble) and len(members(model)) == 3
    # Member i is initialised exactly as the single model of seed 10 + i.
    alone = [build_model(one, seed=10 + i) for i in range(3)]
    for member, single in zip(members(model), alone, strict=True):
        for a, b in zip(member.state_dict().values(), single.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    assert not torch.equal(alone[0].net[0].weight, alone[1].net[0].weight)
    model.eval()
    x = normalize(_batch(6, seed=4))
    with torch.no_grad():
        out = model(x)
        mean = torch.stack([torch.softmax(m.eval()(x), 1) for m in alone]).mean(0)
    # log of the mean probability: exp gives it back, rows sum to 1.
    torch.testing.assert_close(out.exp(), mean, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(6), rtol=0, atol=1e-5)
    # A checkpoint rebuilds the ensemble from its config.
    save_checkpoint(tmp_path / "e.pt", model, one.model_copy(update={"ensemble": 3}))
    loaded, _ = load_checkpoint(tmp_path / "e.pt")
    with torch.no_grad():
        assert isinstance(loaded, Ensemble) and torch.equal(loaded(x), out)
