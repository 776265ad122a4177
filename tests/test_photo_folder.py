"""scripts/make_photo_folder.py on a few sample digits (tmp_path): every variant is read, with
the format, rotation and photo flags the reader should report."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from mnistgap.class_folder import load_folder
from mnistgap.params import Filter

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "class_digits"


def _script():
    spec = importlib.util.spec_from_file_location(
        "make_photo_folder", REPO / "scripts" / "make_photo_folder.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_photo_variant_is_read(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    names = ["0-1-1.png", "3-1-1.png", "7-1-1.png"]
    for name in names:
        shutil.copy(SAMPLE / name, src / name)
    script = _script()
    assert script.render(src, tmp_path / "out", side=160) == 3
    expected = {
        "photo": ("jpeg", False, True),
        "blue": ("jpeg", False, True),
        "pencil": ("jpeg", False, True),
        "exif": ("jpeg", True, False),
        "heic": ("heif", False, False),
        "jpegpng": ("jpeg", False, False),
    }
    assert set(expected) == set(script.VARIANTS)
    for variant, flags in expected.items():
        log: list = []
        digits, rejected = load_folder(tmp_path / "out" / variant, "mnist", Filter(), read_log=log)
        assert rejected == [], variant
        assert digits.labels.tolist() == [0, 3, 7], variant
        assert {(r.format, r.rotated, r.photo) for r in log} == {flags}, variant
