"""`dvc exp run -S` settings: parsed as DVC parses them (Hydra's grammar), applied to existing
keys only."""

from __future__ import annotations

import pytest

from mnistgap.params import Params, as_file_dict, validate
from mnistgap.settings import SettingError, applied, lookup, parse


def test_parse_reads_the_value_as_dvc_does_through_hydra_s_grammar() -> None:
    assert parse("lr=1.0e-3") == ("lr", 0.001)
    # DVC applies -S through Hydra's override grammar, where 1e-3 is a float (PyYAML would
    # read it as a string, and a run made with it would then fail its own check).
    assert parse("lr=1e-3") == ("lr", 0.001)
    assert parse("cnn_channels=[32,64,128]") == ("cnn_channels", [32, 64, 128])
    assert parse("augment.blur.enabled=false") == ("augment.blur.enabled", False)
    assert parse("preset=strong") == ("preset", "strong")
    assert parse("class_digits.dir=../shared/class_digits_dev") == (
        "class_digits.dir",
        "../shared/class_digits_dev",
    )
    assert parse('lr="1e-3"') == ("lr", "1e-3")  # quoted: a string, as in Hydra


@pytest.mark.parametrize(
    "bad", ["lr", "=3", "lr=[1,", "lr=1e-2,1e-3", "+lr=1", "~lr", "class_digits.dir=/a=b"]
)
def test_parse_rejects_a_malformed_setting_in_one_line(bad: str) -> None:
    with pytest.raises(SettingError) as err:
        parse(bad)
    assert "\n" not in str(err.value) and str(err.value).startswith("setting: ")


def test_lookup_walks_dotted_keys_and_names_a_missing_one() -> None:
    tree = {"augment": {"affine": {"degrees": 5.0}}, "lr": 0.002}
    assert lookup(tree, "augment.affine.degrees") == 5.0
    assert lookup(tree, "augment.affine") == {"degrees": 5.0}
    assert lookup(tree, "lr") == 0.002
    for missing in ("augment.affine.shear", "lr.x", "nope"):
        with pytest.raises(KeyError, match=missing):
            lookup(tree, missing)


def test_applied_sets_nested_params_without_touching_the_original() -> None:
    defaults = as_file_dict(Params())
    got = applied(defaults, {"augment.affine.degrees": 10.0, "lr": 0.001, "seed": 3})
    params = validate(got)
    assert params.augment.affine.degrees == 10.0 and params.lr == 0.001 and params.seed == 3
    assert params.augment.affine.shear == Params().augment.affine.shear
    assert defaults == as_file_dict(Params())  # the input is unchanged


@pytest.mark.parametrize("key", ["augment.affine.degree", "augment.nope.x", "lr.value", "lrr"])
def test_applied_refuses_a_key_params_yaml_does_not_have(key: str) -> None:
    with pytest.raises(SettingError, match=f"unknown key '{key}'"):
        applied(as_file_dict(Params()), {key: 1})
