"""mnistgap.params: params.yaml is the models' rendering, and every mistake names its key."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mnistgap import presets
from mnistgap.params import (
    Augment,
    ModelParams,
    Params,
    ParamsError,
    Section,
    TrainParams,
    check_preprocess,
    load_params,
    render,
    validate,
)

REPO = Path(__file__).resolve().parents[1]
PARAMS_YAML = REPO / "params.yaml"


def _committed(path: str) -> str:
    """A file as committed: `dvc exp run` leaves its params applied in the workspace, so
    params.yaml in the work tree may hold an experiment's values."""
    try:
        return subprocess.run(
            ["git", "show", f"HEAD:{path}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return (REPO / path).read_text(encoding="utf-8")


def _leaves(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value
    return out


# --------------------------------------------------------------------------- one truth
def test_committed_config_yaml_is_the_rendering_of_the_models_defaults() -> None:
    """Types, ranges, defaults and docs live in mnistgap/params.py; conf/config.yaml, the base
    of DVC's Hydra composition, is generated from them (python -m mnistgap.params >
    conf/config.yaml), so the two cannot drift."""
    assert _committed("conf/config.yaml") == render(), (
        "conf/config.yaml differs from `python -m mnistgap.params`: change a default or a doc "
        "in mnistgap/params.py and regenerate the file"
    )


def test_committed_params_yaml_is_what_dvc_exp_run_writes_for_the_default_preset(
    tmp_path: Path,
) -> None:
    """params.yaml is the composition of conf/ with the default preset, byte for byte what
    `dvc exp run` (DVC's compose_and_dump) writes, so a plain `dvc exp run` changes nothing."""
    out = tmp_path / "params.yaml"
    presets.write_params(out, conf_dir=REPO / "conf")
    assert _committed("params.yaml") == out.read_text(encoding="utf-8"), (
        "params.yaml is not the default composition: run `python -m mnistgap.presets`"
    )
    assert validate(yaml.safe_load(out.read_text(encoding="utf-8"))) == Params()


def test_models_and_params_yaml_agree_key_for_key() -> None:
    raw = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))
    defaults = Params().model_dump(mode="json")
    assert sorted(_leaves(raw)) == sorted(_leaves(defaults))
    # Every key carries a doc: a description (leaves) or a docstring (sections).
    for name, field in Params.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, Section):
            assert section.__doc__, name
        else:
            assert field.description, name


def test_the_working_params_yaml_validates_and_keeps_its_values() -> None:
    p = load_params(PARAMS_YAML)
    raw = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))
    dumped = Params.pick(p).model_dump(mode="json")
    assert _leaves(dumped) == _leaves(raw)  # validation converts types, never values
    assert type(p["lr"]) is float and type(p["seed"]) is int and type(p["hidden"][0]) is int
    assert p["augment"].affine.scale == (0.8, 1.2)  # YAML lists become tuples for pairs


def test_load_params_returns_only_requested_keys_top_level_or_dotted() -> None:
    p = load_params(PARAMS_YAML, ("seed", "augment", "class_digits.preprocess"))
    assert list(p) == ["seed", "augment", "class_digits.preprocess"]
    assert isinstance(p["augment"], Augment)
    assert p["class_digits.preprocess"] in ("mnist", "study")
    assert load_params(PARAMS_YAML, ()) == {}


def test_load_params_rejects_unknown_requested_key() -> None:
    with pytest.raises(ParamsError, match="'nope'"):
        load_params(PARAMS_YAML, ("seed", "nope"))
    with pytest.raises(ParamsError, match=r"'class_digits\.nope'"):
        load_params(PARAMS_YAML, ("class_digits.nope",))


def test_pick_groups_top_level_keys_for_the_code_that_needs_them() -> None:
    p = load_params(PARAMS_YAML)
    assert ModelParams.pick(p).hidden == p["hidden"]
    assert TrainParams.pick(p).lr == p["lr"]


def test_a_bad_key_elsewhere_fails_even_when_not_requested(
    params_file: Callable[..., Path],
) -> None:
    # The whole file is validated: a typo anywhere fails fast, before any stage work.
    with pytest.raises(ParamsError, match="'model'"):
        load_params(params_file(model="resnet"), ("seed",))


# --------------------------------------------------------------------------- error messages
def _error(path: Path) -> str:
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("params: ")
    return message


def test_lr_written_as_1e_3_is_a_string_and_the_message_says_how_to_write_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "params.yaml"
    text = PARAMS_YAML.read_text(encoding="utf-8")
    text, n = re.subn(r"\nlr: \S+\n", "\nlr: 1e-3\n", text)
    assert n == 1
    path.write_text(text, encoding="utf-8")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["lr"] == "1e-3"  # PyYAML 1.1
    msg = _error(path)
    assert "'lr'" in msg and "1.0e-3" in msg and "'1e-3' (str)" in msg


@pytest.mark.parametrize("value", [0, 0.0, -1.0e-3])
def test_lr_must_be_positive(params_file: Callable[..., Path], value: float) -> None:
    assert "'lr' must be greater than 0" in _error(params_file(lr=value))


def test_lr_true_is_not_a_number(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(lr=True))
    assert "'lr' must be a valid number" in msg and "True (bool)" in msg


def test_batch_size_zero(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(batch_size=0))
    assert "'batch_size' must be greater than or equal to 1" in msg and "got 0 (int)" in msg


@pytest.mark.parametrize("value", [12.5, 128.0])
def test_batch_size_must_be_an_integer(params_file: Callable[..., Path], value: float) -> None:
    assert "'batch_size' must be a valid integer" in _error(params_file(batch_size=value))


@pytest.mark.parametrize("value", [0, 1, 1.5, 0.0, 1.0])
def test_val_frac_must_be_inside_the_open_interval(
    params_file: Callable[..., Path], value: float
) -> None:
    msg = _error(params_file(val_frac=value))
    assert "'val_frac' must be " in msg and ("than 0" in msg or "than 1" in msg)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("model", "resnet", "'mlp' or 'cnn'"),
        ("class_digits.preprocess", "foo", "'mnist' or 'study'"),
        ("device", "tpu", "'auto', 'cpu' or 'cuda'"),
        ("precision", "fp16", "'auto', 'bf16' or 'fp32'"),
        ("lr_schedule", "step", "'none' or 'cosine'"),
    ],
)
def test_choice_errors_list_the_allowed_values(
    params_file: Callable[..., Path], key: str, value: str, allowed: str
) -> None:
    msg = _error(params_file(**{key: value}))
    assert f"'{key}' must be {allowed}, got {value!r}" in msg


def test_the_old_name_of_the_study_recipe_says_its_new_name(
    params_file: Callable[..., Path],
) -> None:
    msg = _error(params_file(**{"class_digits.preprocess": "seed"}))
    assert "'seed' is now called 'study'" in msg and len(msg.splitlines()) == 1
    with pytest.raises(ValueError, match="now called 'study'"):
        check_preprocess("seed")
    with pytest.raises(ValueError, match="must be 'mnist' or 'study', got 'foo'"):
        check_preprocess("foo")


@pytest.mark.parametrize(
    ("key", "value", "rule"),
    [
        ("augment.blur.p", 1.5, "less than or equal to 1"),
        ("augment.affine.shear", 90.0, "less than or equal to 89"),
        ("augment.affine.degrees", -1.0, "greater than or equal to 0"),
        ("filter.min_max_pixel", 300, "less than or equal to 255"),
        ("leakage.ratio_threshold", 1.5, "less than or equal to 1"),
        ("dropout", 1.0, "less than 1"),
    ],
)
def test_ranges_have_one_definition(
    params_file: Callable[..., Path], key: str, value: object, rule: str
) -> None:
    assert f"'{key}' must be {rule}" in _error(params_file(**{key: value}))


def test_missing_key_is_named(params_file: Callable[..., Path]) -> None:
    assert _error(params_file(patience=...)) == "params: missing key 'patience'"


def test_missing_nested_key_is_named_with_its_path(params_file: Callable[..., Path]) -> None:
    assert _error(params_file(**{"augment.blur.sigma": ...})) == (
        "params: missing key 'augment.blur.sigma'"
    )


def test_unknown_key_is_named_and_the_allowed_keys_listed(
    params_file: Callable[..., Path],
) -> None:
    msg = _error(params_file(lrr=1.0e-3))
    assert "unknown key 'lrr'" in msg
    assert msg.endswith("(allowed: " + ", ".join(Params.model_fields) + ")")


def test_unknown_nested_key(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(**{"augment.affine.rotate": 5.0}))
    assert "unknown key 'augment.affine.rotate'" in msg and "degrees" in msg


def test_scale_pair_low_above_high(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(**{"augment.affine.scale": [1.2, 0.8]}))
    assert "'augment.affine.scale'" in msg and "low <= high" in msg


def test_scale_pair_needs_two_numbers(params_file: Callable[..., Path]) -> None:
    assert "'augment.affine.scale'" in _error(params_file(**{"augment.affine.scale": [1.0]}))
    assert "'augment.affine.scale'" in _error(params_file(**{"augment.affine.scale": ["a", 1]}))


def test_blur_sigma_is_a_pair_within_five_pixels(params_file: Callable[..., Path]) -> None:
    p = load_params(params_file(**{"augment.blur.sigma": [0.5, 2.0]}), ("augment",))
    assert p["augment"].blur.sigma == (0.5, 2.0)
    msg = _error(params_file(**{"augment.blur.sigma": [0.0, 6.0]}))
    assert "'augment.blur.sigma' must lie within [0, 5] pixels" in msg


def test_hidden_must_be_positive_integers(params_file: Callable[..., Path]) -> None:
    assert "'hidden' must be greater than or equal to 1, got 0" in _error(
        params_file(hidden=[512, 0])
    )
    assert "'hidden' must have at least 1 item after validation, not 0" in _error(
        params_file(hidden=[])
    )
    assert "'hidden' must be a valid list, got 512 (int)" in _error(params_file(hidden=512))


def test_section_must_be_a_mapping(params_file: Callable[..., Path]) -> None:
    assert "'augment.affine' must be a mapping" in _error(params_file(**{"augment.affine": 3}))


def test_nan_is_rejected(params_file: Callable[..., Path]) -> None:
    assert "'dropout' must be a finite number" in _error(params_file(dropout=float("nan")))


def test_invalid_yaml_gives_one_line(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("seed: 42\nhidden: [512, 256\nlr: 1.0e-3\n", encoding="utf-8")
    msg = _error(path)
    assert "is not valid YAML" in msg and str(path) in msg


def test_missing_file(tmp_path: Path) -> None:
    msg = _error(tmp_path / "nope.yaml")
    assert "cannot read" in msg and "nope.yaml" in msg


def test_empty_file_reports_the_first_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("", encoding="utf-8")
    assert _error(path) == "params: missing key 'preset'"


def test_top_level_list_is_refused() -> None:
    with pytest.raises(ParamsError, match="must be a mapping"):
        validate([1, 2])
