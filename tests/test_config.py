"""Tests for mnistgap.config: the real params.yaml validates, and every mistake names its key."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from mnistgap.config import SCHEMA, ParamsError, load_params, validate

REPO = Path(__file__).resolve().parents[1]
PARAMS_YAML = REPO / "params.yaml"


def _leaves(schema: dict, prefix: str = "") -> list[str]:
    out = []
    for key, spec in schema.items():
        if isinstance(spec, dict):
            out += _leaves(spec, f"{prefix}{key}.")
        else:
            out.append(prefix + key)
    return out


def _get(d: dict, dotted: str) -> object:
    for part in dotted.split("."):
        d = d[part]
    return d


# --------------------------------------------------------------------------- the real file
def test_real_params_validate_with_plain_types() -> None:
    p = load_params(PARAMS_YAML)
    raw = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))
    # Every schema leaf is present (validate() would have raised otherwise) and unchanged
    # in value: validation converts types, it never rewrites a valid value.
    for key in _leaves(SCHEMA):
        assert _get(p, key) == _get(raw, key), key
    assert isinstance(p["lr"], float) and p["lr"] == pytest.approx(1.0e-3)
    assert isinstance(p["val_frac"], float)
    assert isinstance(p["seed"], int) and not isinstance(p["seed"], bool)
    assert isinstance(p["batch_size"], int)
    assert isinstance(p["hidden"], list) and all(type(h) is int for h in p["hidden"])
    assert p["hidden"] == [512, 256, 128]
    assert all(type(c) is int for c in p["cnn_channels"])
    assert p["augment"]["affine"]["scale"] == [0.8, 1.2]
    assert all(type(v) is float for v in p["augment"]["affine"]["scale"])
    assert type(p["augment"]["enabled"]) is bool
    assert type(p["augment"]["thickness"]["max_radius"]) is int
    assert p["class_digits"]["preprocess"] in ("mnist", "seed")


def test_schema_and_file_have_the_same_keys() -> None:
    raw = yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))

    def keys(d: dict, prefix: str = "") -> set[str]:
        out: set[str] = set()
        for k, v in d.items():
            out |= keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
        return out

    assert keys(raw) == set(_leaves(SCHEMA))


def test_load_params_returns_only_requested_keys() -> None:
    p = load_params(PARAMS_YAML, ("seed", "augment"))
    assert list(p) == ["seed", "augment"]
    assert p["seed"] == 42
    assert set(p["augment"]) == set(SCHEMA["augment"])
    assert load_params(PARAMS_YAML, ()) == {}


def test_load_params_rejects_unknown_requested_key() -> None:
    with pytest.raises(ParamsError, match="'nope'"):
        load_params(PARAMS_YAML, ("seed", "nope"))


def test_a_bad_key_elsewhere_fails_even_when_not_requested(
    params_file: Callable[..., Path],
) -> None:
    # The whole file is validated: a typo anywhere fails fast, before any stage work.
    path = params_file(model="resnet")
    with pytest.raises(ParamsError, match="'model'"):
        load_params(path, ("seed",))


# --------------------------------------------------------------------------- error messages
def _error(path: Path) -> str:
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("params: ")
    return message


def _edit(tmp_path: Path, old: str, new: str) -> Path:
    text = PARAMS_YAML.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    path = tmp_path / "params.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_lr_written_as_1e_3_is_a_string_and_the_message_says_how_to_write_it(
    tmp_path: Path,
) -> None:
    path = _edit(tmp_path, "lr: 1.0e-3", "lr: 1e-3")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["lr"] == "1e-3"  # PyYAML 1.1
    msg = _error(path)
    assert "'lr'" in msg and "1.0e-3" in msg and "'1e-3'" in msg and "(str)" in msg


@pytest.mark.parametrize("value", [0, 0.0, -1.0e-3])
def test_lr_must_be_positive(params_file: Callable[..., Path], value: float) -> None:
    msg = _error(params_file(lr=value))
    assert "'lr' must be a number > 0" in msg


def test_lr_true_is_not_a_number(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(lr=True))
    assert "'lr' must be a number" in msg and "True (bool)" in msg


def test_batch_size_zero(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(batch_size=0))
    assert "'batch_size' must be an integer >= 1" in msg and "got 0" in msg


def test_batch_size_fraction_is_not_an_integer(params_file: Callable[..., Path]) -> None:
    assert "'batch_size' must be an integer" in _error(params_file(batch_size=12.5))


@pytest.mark.parametrize("value", [0, 1, 1.5, 0.0, 1.0])
def test_val_frac_must_be_inside_the_open_interval(
    params_file: Callable[..., Path], value: float
) -> None:
    msg = _error(params_file(val_frac=value))
    assert "'val_frac' must be a number > 0 and < 1" in msg


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("model", "resnet", "one of mlp, cnn"),
        ("class_digits.preprocess", "foo", "one of mnist, seed"),
        ("device", "tpu", "one of auto, cpu, cuda"),
        ("precision", "fp16", "one of bf16, fp32"),
        ("lr_schedule", "step", "one of none, cosine"),
    ],
)
def test_choice_errors_list_the_allowed_values(
    params_file: Callable[..., Path], key: str, value: str, allowed: str
) -> None:
    msg = _error(params_file(**{key: value}))
    assert f"'{key}' must be {allowed}" in msg
    assert repr(value) in msg


def test_missing_key_is_named(params_file: Callable[..., Path]) -> None:
    assert _error(params_file(patience=...)) == "params: missing key 'patience'"


def test_missing_nested_key_is_named_with_its_path(params_file: Callable[..., Path]) -> None:
    assert _error(params_file(**{"augment.noise.std": ...})) == (
        "params: missing key 'augment.noise.std'"
    )


def test_unknown_key_is_named_and_the_allowed_keys_listed(
    params_file: Callable[..., Path],
) -> None:
    msg = _error(params_file(lrr=1.0e-3))
    assert "unknown key 'lrr'" in msg
    allowed = re.search(r"\(allowed: (.*)\)", msg)
    assert allowed is not None
    assert allowed.group(1).split(", ") == list(SCHEMA)


def test_unknown_nested_key(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(**{"augment.affine.rotate": 5.0}))
    assert "unknown key 'augment.affine.rotate'" in msg and "degrees" in msg


def test_scale_pair_low_above_high(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(**{"augment.affine.scale": [1.2, 0.8]}))
    assert "'augment.affine.scale'" in msg and "low <= high" in msg


def test_scale_pair_needs_two_numbers(params_file: Callable[..., Path]) -> None:
    assert "'augment.affine.scale'" in _error(params_file(**{"augment.affine.scale": [1.0]}))


def test_hidden_must_be_positive_integers(params_file: Callable[..., Path]) -> None:
    assert "'hidden' must be a list of at least 1 integers >= 1" in _error(
        params_file(hidden=[512, 0])
    )
    assert "'hidden'" in _error(params_file(hidden=[]))
    assert "'hidden'" in _error(params_file(hidden=512))


def test_section_must_be_a_mapping(params_file: Callable[..., Path]) -> None:
    assert "'augment.affine' must be a mapping" in _error(params_file(**{"augment.affine": 3}))


def test_contrast_low_above_high(params_file: Callable[..., Path]) -> None:
    msg = _error(params_file(**{"augment.contrast.low": 0.9, "augment.contrast.high": 0.5}))
    assert "'augment.contrast.low'" in msg and "'augment.contrast.high'" in msg


def test_nan_is_rejected(tmp_path: Path) -> None:
    path = _edit(tmp_path, "dropout: 0.2", "dropout: .nan")
    assert "'dropout'" in _error(path)


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
    assert _error(path) == "params: missing key 'seed'"


def test_top_level_list_is_refused() -> None:
    with pytest.raises(ParamsError, match="must be a mapping"):
        validate([1, 2])  # type: ignore[arg-type]


def test_params_error_is_a_value_error() -> None:
    # Stages turn ValueError into one-line errors (mnistgap.cli.run_stage).
    assert issubclass(ParamsError, ValueError)


# --------------------------------------------------------------------------- documentation
_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):(?P<rest>.*)$")


def undocumented_keys(text: str) -> list[str]:
    """Leaf keys of a params file without a comment, as ``line N: dotted.key``.

    A leaf key is documented when its line carries a ``# ...`` comment or the line directly
    above is a full-line comment. Section headers (a key with nothing after the colon and
    more-indented lines below) need no comment of their own: their children carry them. One
    exception keeps the file readable: an ``enabled`` switch is documented by its section
    header's comment (which says what it switches on).
    """
    lines = text.splitlines()
    missing: list[str] = []
    stack: list[tuple[int, str, bool]] = []  # (indent, key, header has a comment)
    for i, line in enumerate(lines):
        m = _KEY_LINE.match(line)
        if m is None:
            continue
        indent, key = len(m["indent"]), m["key"]
        value, _, comment = m["rest"].partition("#")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        body = (ln for ln in lines[i + 1 :] if ln.strip() and not ln.lstrip().startswith("#"))
        following = next(body, "")
        is_header = not value.strip() and len(following) - len(following.lstrip()) > indent
        if is_header:
            stack.append((indent, key, bool(comment.strip())))
            continue
        above = lines[i - 1].strip() if i else ""
        documented = (
            bool(comment.strip())
            or above.startswith("#")
            or (key == "enabled" and bool(stack) and stack[-1][2])
        )
        if not documented:
            missing.append(f"line {i + 1}: {'.'.join([k for _, k, _ in stack] + [key])}")
    return missing


def test_rule_for_comments_on_a_small_example() -> None:
    text = (
        "# top\n"
        "a: 1  # documented\n"
        "# explained above\n"
        "b: 2\n"
        "c: 3\n"
        "sec:  # a switchable thing\n"
        "  enabled: true\n"
        "  x: 1\n"
        "bare:\n"
        "  enabled: false\n"
    )
    assert undocumented_keys(text) == ["line 5: c", "line 8: sec.x", "line 10: bare.enabled"]


def test_every_param_is_commented() -> None:
    missing = undocumented_keys(PARAMS_YAML.read_text(encoding="utf-8"))
    assert not missing, "params.yaml keys without a comment:\n" + "\n".join(missing)
