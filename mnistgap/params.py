"""The pipeline's parameters: one typed model per section of ``params.yaml``, defined once.

Every key's type, range, default and documentation live here and nowhere else:

* stages call :func:`load_params` once with the keys ``dvc.yaml`` lists for them; the whole
  file is validated (a typo anywhere fails fast, with one line naming the key), and only the
  requested keys are returned, so a stage's result depends only on the params it declares;
* library modules take these models (or plain values) as arguments and never open a file;
* ``conf/config.yaml``, the base of DVC's Hydra composition, is rendered from the defaults
  and docs below (``python -m mnistgap.params > conf/config.yaml``); ``params.yaml`` is its
  composition with the default preset (:mod:`mnistgap.presets`), which is what ``dvc exp
  run`` writes; ``tests/test_params.py`` checks that both committed files are exactly that.

Training and model keys are top level (``dvc exp run -S lr=1e-2`` works as typed); the
models :class:`ModelParams` and :class:`TrainParams` group them for the code that needs them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)


class ParamsError(ValueError):
    """A missing, unknown or invalid parameter; the message is one line naming the key."""


class Section(BaseModel):
    """Strict, closed and immutable: ``1e-3`` written in YAML (a string) is refused, not parsed;
    ``true`` is not a number; unknown keys are errors; NaN and infinities are refused."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def pick(cls, values: Mapping[str, Any]) -> Self:
        """This model built from the matching keys of a larger mapping (extra keys ignored)."""
        return cls.model_validate({name: values[name] for name in cls.model_fields})


# YAML has no tuples: a pair arrives as a list. Lenient about the container, strict about
# its items (each a real number; a string inside is still refused).
Pair = Annotated[tuple[Annotated[float, Field(strict=True)], ...], Field(strict=False)]
PositiveInts = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]


def _check_pair(name: str, pair: tuple[float, ...], low: float | None = None) -> None:
    if len(pair) != 2 or pair[0] > pair[1]:
        raise ValueError(f"'{name}' must be a list [low, high] of two numbers with low <= high")
    if low is not None and pair[0] <= low:
        raise ValueError(f"'{name}' must have low > {low:g}")


# --------------------------------------------------------------------------- augmentation
class Affine(Section):
    """the study's RandomAffine(degrees=5, translate=(0.1, 0.1), scale=(0.8, 1.2), shear=5),
    optionally after a random width stretch"""

    enabled: bool = True
    degrees: float = Field(
        5.0, ge=0, le=180, description="rotation drawn from U(-degrees, degrees)"
    )
    translate: float = Field(
        0.1, ge=0, le=1, description="shift up to this fraction of the width/height, whole pixels"
    )
    scale: Pair = Field((0.8, 1.2), description="zoom drawn from U(low, high)")
    shear: float = Field(
        5.0, ge=0, le=89, description="x-shear in degrees drawn from U(-shear, shear)"
    )
    stretch: float = Field(
        1.0,
        ge=1,
        le=2,
        description="width times a factor drawn log-uniformly from [1/stretch, stretch], before "
        "the affine (not in the study); 1 = off",
    )

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        _check_pair("augment.affine.scale", self.scale, low=0.0)
        return self


class Blur(Section):
    """Gaussian blur of random width (low-resolution scans and photos, soft pens)"""

    enabled: bool = True
    p: float = Field(0.25, ge=0, le=1, description="probability per image")
    sigma: Pair = Field((0.5, 1.0), description="its std in pixels drawn from U(low, high)")

    @model_validator(mode="after")
    def _pairs(self) -> Self:
        _check_pair("augment.blur.sigma", self.sigma)
        if self.sigma[0] < 0 or self.sigma[1] > 5:
            raise ValueError("'augment.blur.sigma' must lie within [0, 5] pixels")
        return self


class Augment(Section):
    """training-time augmentation (per batch, independent parameters per image)"""

    enabled: bool = Field(
        True, description="master switch; false = train on the plain images (the study's stage 1)"
    )
    affine: Affine = Affine()
    blur: Blur = Blur()


# --------------------------------------------------------------------------- data
#: How a digit image becomes MNIST-like (mnistgap/recipe.py): MNIST's own recipe, or the study's
#: plain resize. ``seed`` was the study's recipe's earlier name.
Preprocess = Literal["mnist", "study"]


def check_preprocess(value: object) -> None:
    """Raise ValueError (one line) unless ``value`` names a :data:`Preprocess` recipe."""
    _not_renamed(value)
    if value not in get_args(Preprocess):
        allowed = " or ".join(repr(v) for v in get_args(Preprocess))
        raise ValueError(f"preprocess must be {allowed}, got {value!r}")


def _not_renamed(value: object) -> None:
    if value == "seed":
        raise ValueError("'seed' is now called 'study' (the study's plain resize)")


class ClassDigits(Section):
    """the folder of real handwritten digits and how they are read"""

    dir: str = Field(
        "data/class_digits",
        min_length=1,
        description="folder of <digit>-<group>-<member>.png; the bundled sample by default",
    )
    preprocess: Preprocess = Field(
        "mnist",
        description="mnist (MNIST's own recipe: invert, stretch, crop, fit 20x20, centre of "
        "mass) | study (the study's plain resize)",
    )

    @field_validator("preprocess", mode="before")
    @classmethod
    def _known(cls, value: object) -> object:
        _not_renamed(value)  # any other unknown value: the Literal's error lists the choices
        return value


class Filter(Section):
    """the study's quality filter on the 28x28 image; rejects blank/unreadable digits"""

    enabled: bool = True
    min_max_pixel: int = Field(
        70, ge=0, le=255, description="reject if the brightest pixel is below this (0-255)"
    )
    bright_level: int = Field(
        60, ge=0, le=255, description="a pixel above this level counts as ink ..."
    )
    min_bright_pixels: int = Field(
        10, ge=0, le=784, description="... and fewer ink pixels than this is rejected"
    )
    min_contrast: int = Field(
        30, ge=0, le=255, description="reject if max - min pixel is below this"
    )


class Leakage(Section):
    """near-copies of MNIST training images among the class digits (both sides MNIST-normalised).

    A digit is flagged when EITHER criterion holds. Both are calibrated on genuine new
    handwriting, the 10,000 MNIST test digits vs the 60,000 training images
    (benchmarks/leakage_calibration.py), at about their 0.1% quantiles (distance 0.0231,
    ratio 0.623). threshold is rounded DOWN to 0.02 (flags 0.01% of MNIST test digits): plain
    strokes such as a straight "1" are genuinely that close to some training image (a real
    class "1" lies at 0.021), while copies that went through the class-digit loader unchanged
    all lie below 0.015. ratio_threshold 0.62 flags 0.09% of MNIST test digits. It catches
    degraded copies that no distance can: binarised copies lie a median 0.067 from their
    originals (a distance threshold that far would flag >5% of genuine digits), yet 79% of
    them have a ratio below 0.62.
    """

    threshold: float = Field(
        0.02,
        ge=0,
        le=1,
        description="nearest RMS pixel distance (0-1 scale) below this: an almost unchanged copy",
    )
    ratio_threshold: float = Field(
        0.62,
        ge=0,
        le=1,
        description="nearest / second-nearest distance below this (Lowe's ratio test); 0 = off",
    )


class Adapt(Section):
    """adaptation to the class (stage adapt): the trained model fine-tuned on the class's own digits

    Folds over groups: each fold's model starts from models/model.pt and is fine-tuned on the
    other folds' class digits mixed with MNIST training digits (so that MNIST is not
    forgotten), with the training augmentation, loss and precision; it reads only its own
    fold's groups, whose writers it never saw. models/adapted.pt is fine-tuned the same way
    on every group. Stage adapt_curve repeats the folds with fewer groups for the learning
    curve.
    """

    enabled: bool = Field(True, description="false = no adaptation (its reports say so)")
    folds: int = Field(
        5,
        ge=2,
        le=100,
        description="folds over groups, balanced by digit count (fewer groups: one per group)",
    )
    steps: int = Field(500, ge=1, le=100_000, description="Adam steps of each fine-tuning")
    lr: float = Field(
        5.0e-4, gt=0, le=1, description="their learning rate (decayed as lr_schedule says)"
    )
    batch_size: int = Field(128, ge=2, le=8192, description="images per step ...")
    class_frac: float = Field(
        0.5, gt=0, lt=1, description="... this fraction of them class digits, the rest MNIST"
    )
    freeze_norm: bool = Field(
        True,
        description="keep BatchNorm's running statistics (MNIST's) while fine-tuning; false = "
        "update them from the mixed batches",
    )
    curve: Annotated[list[Annotated[int, Field(ge=1)]], Field(max_length=10)] = Field(
        [1, 2, 4],
        description="learning curve: numbers of other groups to adapt on (besides 0 and all)",
    )

    @model_validator(mode="after")
    def _increasing(self) -> Self:
        if list(self.curve) != sorted(set(self.curve)):
            raise ValueError("'adapt.curve' must be increasing numbers of groups")
        return self


#: The independent digit sets mnistgap/external.py can read (tests check the two agree).
ExternalSetName = Literal["usps", "semeion"]
#: The test-time views mnistgap/tta.py defines (tests check the two agree).
TestTimeViews = Literal["none", "rot", "scale"]


# --------------------------------------------------------------------------- top level
class ModelParams(Section):
    """The network (top-level keys); every checkpoint stores it to rebuild the model."""

    model: Literal["mlp", "cnn"] = Field(
        "cnn",
        description="cnn (a small all-convolutional net: reads new writers best) | mlp (the "
        "study's model, trained as the study did)",
    )
    hidden: PositiveInts = Field(
        [512, 256, 128], description="MLP hidden layer widths (784 -> ... -> 10)"
    )
    dropout: float = Field(
        0.2, ge=0, lt=1, description="dropout after every hidden layer (0 <= p < 1)"
    )
    cnn_channels: Annotated[
        list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=4)
    ] = Field(
        [20, 40, 80],
        description="CNN: output channels of its blocks (each a 3x3 conv with stride 2, "
        "BatchNorm, ReLU)",
    )
    ensemble: int = Field(
        1,
        ge=1,
        le=10,
        description="members: train this many models on the split of seed (member i "
        "initialised, shuffled and augmented from seed + i) and average their probabilities; "
        "1 = one model",
    )


class TrainParams(Section):
    """How one model is trained (top-level keys)."""

    seed: int = Field(
        42, ge=0, description="one seed for the split, weight init, shuffling and augmentation"
    )
    lr: float = Field(
        2.0e-3,
        gt=0,
        description="Adam learning rate (> 0); the study used 1e-3 (and compared 1e-2, 1e-4)",
    )
    batch_size: int = Field(256, ge=1, description="training batch size (>= 1); the study used 128")
    max_epochs: int = Field(
        10, ge=1, description="upper bound on epochs (>= 1); the study allowed 20"
    )
    patience: int = Field(
        3,
        ge=0,
        description="early stopping: epochs without a lower validation loss before stopping; "
        "0 = off (keep the last epoch)",
    )
    label_smoothing: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="cross-entropy against (1 - e) x the label + e / 10 on every digit: "
        "training and validation losses (and so early stopping) use it, evaluation reports "
        "plain cross-entropy; 0 = the study's loss",
    )
    lr_schedule: Literal["none", "cosine"] = Field(
        "cosine",
        description="none (constant lr, the study) | cosine (decay to 0 over max_epochs, per step)",
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="auto (bf16 where the CPU/GPU computes it natively: AVX512-BF16, AMX, CUDA; "
        "else fp32) | bf16 | fp32",
    )
    eval_batch_size: int = Field(
        4096,
        ge=1,
        description="batch size for validation and evaluation (memory only; does not change "
        "results)",
    )


class Params(TrainParams, ModelParams):
    """The whole of params.yaml."""

    preset: str = Field(
        "default",
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the preset these params were composed from (conf/preset/NAME.yaml, "
        "-S preset=NAME): a label, so that `dvc exp show` says which ran",
    )
    val_frac: float = Field(
        0.15,
        gt=0,
        lt=1,
        description="fraction of the 60,000 MNIST training images held out for validation "
        "(0 < f < 1)",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto (cuda when present, else cpu) | cpu | cuda"
    )
    tta: TestTimeViews = Field(
        "rot",
        description="test-time augmentation of every evaluation, prediction and the collection "
        "page: rot (the mean of the model's probabilities over the digit and its rotations by "
        "+-7 degrees) | scale (over zooms 0.9 and 1.1) | none (the digit alone, the study)",
    )
    augment: Augment = Augment()
    class_digits: ClassDigits = ClassDigits()
    external: Annotated[list[ExternalSetName], Field(max_length=8)] = Field(
        ["usps"],
        description="independent real-handwriting sets, evaluation only (usps | semeion); one "
        "DVC stage pair each",
    )
    filter: Filter = Filter()
    leakage: Leakage = Leakage()
    adapt: Adapt = Adapt()

    @model_validator(mode="after")
    def _unique_sets(self) -> Self:
        if len(set(self.external)) != len(self.external):
            raise ValueError("'external' names a set twice")
        return self


# The file's layout: a header comment, then its top-level keys.
LAYOUT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("preset", ("preset",)),
    ("data split", ("seed", "val_frac")),
    ("model", ("model", "hidden", "dropout", "cnn_channels", "ensemble")),
    (
        "training",
        (
            "lr",
            "batch_size",
            "max_epochs",
            "patience",
            "label_smoothing",
            "lr_schedule",
            "device",
            "precision",
            "eval_batch_size",
        ),
    ),
    ("evaluation", ("tta",)),
    ("augmentation", ("augment",)),
    ("class digits", ("class_digits", "filter")),
    ("independent sets", ("external",)),
    ("leakage check", ("leakage",)),
    ("adaptation to the class", ("adapt",)),
)
#: The top-level keys in the file's order.
TOP_LEVEL_KEYS = tuple(key for _, keys in LAYOUT for key in keys)


# --------------------------------------------------------------------------- loading
def _dotted(loc: Sequence[int | str]) -> str:
    """('augment', 'affine', 'scale', 0) -> 'augment.affine.scale' (list positions dropped)."""
    return ".".join(str(p) for p in loc if isinstance(p, str))


def _section_at(loc: Sequence[int | str]) -> type[BaseModel]:
    """The model whose fields live at ``loc`` (the parent of the last key)."""
    model: type[BaseModel] = Params
    for part in loc[:-1]:
        sub = model.model_fields[str(part)].annotation if isinstance(part, str) else None
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            model = sub
    return model


def _one_line(err: ValidationError) -> str:
    """The first error of a validation as one line that names the key."""
    first = err.errors(include_url=False)[0]
    key, kind, value = _dotted(first["loc"]), first["type"], first.get("input")
    if kind == "missing":
        return f"params: missing key '{key}'"
    if kind == "extra_forbidden":
        allowed = ", ".join(_section_at(first["loc"]).model_fields)
        return f"params: unknown key '{key}' (allowed: {allowed})"
    if kind == "value_error":  # a cross-field check: its message names its keys
        return "params: " + str(first["ctx"]["error"])
    got = f"{value!r} ({type(value).__name__})"
    if kind == "model_type":
        return f"params: '{key}' must be a mapping, got {got}"
    hint = ""
    if isinstance(value, str) and kind in ("float_type", "int_type"):
        hint = " (write floats as 1.0e-3: YAML reads 1e-3 as a string)"
    rule = re.sub(r"^\w+ should ", "", first["msg"])  # "Input should be ..." -> "be ..."
    return f"params: '{key}' must {rule}, got {got}{hint}"


def validate(raw: Any) -> Params:
    """Validate a parsed params mapping; raise :class:`ParamsError` naming the first bad key."""
    if not isinstance(raw, Mapping):
        raise ParamsError(f"params: the file must be a mapping of keys, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_one_line(err)) from None


def _require_all_keys(raw: Mapping[str, Any], model: type[BaseModel], prefix: str = "") -> None:
    """params.yaml spells out every key: a missing one is an error, not a silent default.
    Keys are checked in the file's order, so the first missing one is named."""
    names = TOP_LEVEL_KEYS if model is Params else tuple(model.model_fields)
    for name in names:
        field = model.model_fields[name]
        if name not in raw:
            raise ParamsError(f"params: missing key '{prefix}{name}'")
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and isinstance(raw[name], Mapping):
            _require_all_keys(raw[name], sub, f"{prefix}{name}.")


def load_params(path: str | Path = "params.yaml", keys: Iterable[str] | None = None) -> dict:
    """Read and validate ``path``; return ``{key: value}`` for the requested ``keys``.

    ``keys`` are top-level names or dotted paths (``class_digits.preprocess``), as ``dvc.yaml``
    lists them; None returns every top-level key. Values are plain Python types or the
    section models above. Raises :class:`ParamsError` (a ValueError) with one line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ParamsError(f"params: cannot read {path}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParamsError(f"params: {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    raw = {} if raw is None else raw
    if isinstance(raw, Mapping):
        _require_all_keys(raw, Params)
    params = validate(raw)
    out: dict[str, Any] = {}
    for key in TOP_LEVEL_KEYS if keys is None else keys:
        node: Any = params
        for part in key.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise ParamsError(f"params: stage asks for unknown key '{key}'")
            node = getattr(node, part)
        out[key] = node
    return out


# --------------------------------------------------------------------------- conf/config.yaml
HEADER = """\
# The pipeline's parameters and their defaults: the base of DVC's Hydra composition
# (.dvc/config: hydra.enabled). `dvc exp run` composes this file, a preset
# (conf/preset/<name>.yaml, chosen with `-S preset=NAME`) and any `-S key=value` into
# params.yaml, which every stage validates (types and ranges) before doing any work;
# `dvc repro` reads params.yaml as it is.
# Generated from mnistgap/params.py (types, ranges, defaults and these comments live there):
# python -m mnistgap.params > conf/config.yaml && python -m mnistgap.presets
"""
#: Hydra's defaults list: this file's values first, then the chosen preset's on top of them.
DEFAULTS = """\
defaults:
  - _self_
  - preset: default         # conf/preset/default.yaml; -S preset=strong picks another
"""

_COMMENT_COLUMN = 28


def as_file_dict(params: Params) -> dict[str, Any]:
    """Plain values (lists for pairs) with the top-level keys in the file's order."""
    dumped = params.model_dump(mode="json")
    return {key: dumped[key] for key in TOP_LEVEL_KEYS}


def _flow(value: Any) -> str:
    """A value as YAML flow text: lists inline, floats with a dot (1.0e-03 style exponents)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, float):
        if value == 0 or 1e-2 <= abs(value) < 1e6:
            return repr(value)
        # 1.0e-3, not 1e-3 (a string to PyYAML) nor 0.001 (hard to read among exponents).
        mantissa, exp = f"{value:.15e}".split("e")
        mantissa = mantissa.rstrip("0")
        text = f"{mantissa}{'0' if mantissa.endswith('.') else ''}e{int(exp)}"
        assert float(text) == value, text
        return text
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _line(indent: int, key: str, value: str, doc: str | None) -> str:
    text = f"{' ' * indent}{key}:{' ' + value if value else ''}"
    return f"{text.ljust(_COMMENT_COLUMN - 1)} # {doc}" if doc else text


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*out, line] if line else out


def _lines(model: BaseModel, names: Iterable[str], indent: int) -> list[str]:
    """The YAML lines of ``model``'s fields ``names``: scalars with their description as a
    trailing comment, sections with their docstring (first paragraph on the key's line, the
    rest as comment lines below it) and their own fields indented."""
    fields = type(model).model_fields
    lines: list[str] = []
    for name in names:
        value = getattr(model, name)
        if not isinstance(value, BaseModel):
            lines.append(_line(indent, name, _flow(value), fields[name].description))
            continue
        first, *rest = (type(value).__doc__ or "").strip().split("\n\n", 1)
        lines.append(_line(indent, name, "", " ".join(first.split())))
        for paragraph in rest:
            width = 96 - indent - 4
            lines += [
                f"{' ' * (indent + 2)}# {t}" for t in _wrap(" ".join(paragraph.split()), width)
            ]
        lines += _lines(value, type(value).model_fields, indent + 2)
    return lines


def render(params: Params | None = None) -> str:
    """conf/config.yaml for ``params`` (the defaults when None): Hydra's defaults list, then
    every key with its comment."""
    params = Params() if params is None else params
    if sorted(TOP_LEVEL_KEYS) != sorted(Params.model_fields):
        raise AssertionError("LAYOUT must list every top-level key exactly once")
    lines = [HEADER.rstrip("\n"), "", DEFAULTS.rstrip("\n")]
    for title, keys in LAYOUT:
        lines += ["", f"# --- {title} " + "-" * (86 - len(title)), *_lines(params, keys, 0)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
