"""Class mode of the collect app: the class code, member tokens, the teacher view, limits.

In-process (FastAPI's TestClient); the real command, the browser and the load test are in
tests/test_collect_browser.py and tests/test_collect_load.py (slow).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mnistgap.collect import cli as collect_cli
from mnistgap.collect import loader
from mnistgap.collect.app import create_app
from mnistgap.collect.classroom import ClassMode
from mnistgap.collect.synthetic import digit_png
from mnistgap.mnist_source import write_idx
from mnistgap.params import Filter

CODE = "maple-42"
KEY = "teacher-key-123"
LEAKAGE = {"threshold": 0.02, "ratio_threshold": 0.62}


@pytest.fixture
def make(tmp_path: Path) -> Callable[..., TestClient]:
    def build(folder: Path | None = None, **options: Any) -> TestClient:
        mode = options.pop("class_mode", None) or ClassMode(CODE, KEY, **options.pop("limits", {}))
        app = create_app(
            folder or tmp_path / "collected",
            None,
            class_mode=mode,
            leakage_cfg=LEAKAGE,
            **options,
        )
        return TestClient(app)

    return build


def code(**more: str) -> dict[str, str]:
    return {"X-Class-Code": CODE, **more}


def save(client: TestClient, digit: int, group: int, member: int, **headers: str):
    return client.post(
        "/api/digits",
        data={"digit": str(digit), "group": str(group), "member": str(member)},
        files={"image": ("d.png", digit_png(digit, seed=digit), "image/png")},
        headers=headers,
    )


def test_every_api_call_needs_the_class_code(make: Callable[..., TestClient]) -> None:
    client = make()
    for method, path in [("get", "/api/info"), ("get", "/api/digits"), ("post", "/api/predict")]:
        missing = getattr(client, method)(path)
        assert missing.status_code == 401
        assert missing.json() == {
            "error": "this page needs the class code (ask your teacher)",
            "class_code_required": True,
        }
        wrong = getattr(client, method)(path, headers={"X-Class-Code": "maple-43"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "wrong class code"
    assert save(client, 3, 1, 1).status_code == 401
    assert client.get("/api/info", headers=code()).json()["class_mode"] is True
    assert client.get("/").status_code == 200  # the page itself asks for the code
    assert not (make().app.state.out_dir / "3-1-1.png").exists()


def test_a_member_token_protects_a_members_digits(
    make: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make()
    first = save(client, 3, 2, 1, **code())
    assert first.status_code == 201
    token = first.json()["member_token"]
    assert len(token) >= 20

    other = save(client, 4, 2, 1, **code())  # another browser, same numbers
    assert other.status_code == 403
    assert "already has digits saved from another browser" in other.json()["error"]
    wrong = save(client, 4, 2, 1, **code(**{"X-Member-Token": token[::-1]}))
    assert wrong.status_code == 403
    assert wrong.json()["error"] == "wrong member token for group 2, member 1"
    # replace=true is a write too
    replace = client.post(
        "/api/digits",
        data={"digit": "3", "group": "2", "member": "1", "replace": "true"},
        files={"image": ("d.png", digit_png(3, seed=9), "image/png")},
        headers=code(),
    )
    assert replace.status_code == 403
    folder = tmp_path / "collected"
    assert (folder / "3-2-1.png").read_bytes() == digit_png(3, seed=3)

    own = save(client, 4, 2, 1, **code(**{"X-Member-Token": token}))
    assert own.status_code == 201
    assert "member_token" not in own.json()
    assert save(client, 4, 2, 2, **code()).json()["member_token"] != token

    # Only digests are kept, and a restarted server still knows them.
    stored = (folder / ".member-tokens.json").read_text()
    assert token not in stored
    assert set(json.loads(stored)["members"]) == {"2-1", "2-2"}
    again = make()
    assert save(again, 5, 2, 1, **code()).status_code == 403
    assert save(again, 5, 2, 1, **code(**{"X-Member-Token": token})).status_code == 201
    # The token file is no digit: the pipeline's loader does not count it.
    assert [f for f, _ in loader.saved_digits(folder)] == [
        "3-2-1.png",
        "4-2-1.png",
        "4-2-2.png",
        "5-2-1.png",
    ]


def test_a_rejected_first_save_issues_no_token(make: Callable[..., TestClient]) -> None:
    client = make()
    blank = client.post(
        "/api/digits",
        data={"digit": "1", "group": "7", "member": "1"},
        files={"image": ("d.png", b"not a png", "image/png")},
        headers=code(),
    )
    assert blank.status_code == 422
    retry = save(client, 1, 7, 1, **code())
    assert retry.status_code == 201
    assert "member_token" in retry.json()


def test_teacher_view_needs_its_key_and_shows_progress(
    make: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make(public_url="http://192.168.1.20:8000/")
    token = save(client, 3, 1, 1, **code()).json()["member_token"]
    save(client, 4, 1, 1, **code(**{"X-Member-Token": token}))
    save(client, 0, 2, 5, **code())
    assert client.get("/api/progress").status_code == 401
    assert client.get("/api/progress", headers={"X-Teacher-Key": "nope-nope-nope"}).json() == {
        "error": "the teacher view needs the X-Teacher-Key"
    }
    # The class code is not the teacher's key.
    assert client.get("/api/progress", headers={"X-Teacher-Key": CODE}).status_code == 401
    r = client.get("/api/progress", headers={"X-Teacher-Key": KEY})
    assert r.status_code == 200
    body = r.json()
    assert body["files"] == 3
    assert [(m["group"], m["member"], m["count"], m["has_token"]) for m in body["members"]] == [
        (1, 1, 2, True),
        (2, 5, 1, True),
    ]
    assert body["members"][0]["digits"] == {"3": "3-1-1.png", "4": "4-1-1.png"}
    assert body["url"] == "http://192.168.1.20:8000/"
    assert body["qr_svg"].startswith("data:image/svg+xml")
    assert body["flagged"] == []
    assert "leakage check off" in body["leakage_note"]
    assert client.get("/teacher").status_code == 200


def test_teacher_view_flags_a_copy_of_an_mnist_training_image(
    make: Callable[..., TestClient], tmp_path: Path
) -> None:
    # A tiny stand-in for MNIST's training set that contains the saved "3" itself.
    copied = loader.read_digit(digit_png(3, seed=3), "mnist", Filter())
    rng = np.random.default_rng(0)
    others = [loader.read_digit(digit_png(d, seed=50 + d), "mnist", Filter()) for d in range(10)]
    images = np.stack([*others, copied, rng.integers(0, 255, (28, 28), dtype=np.uint8)])
    raw = tmp_path / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images.astype(np.uint8))
    write_idx(raw / "train-labels-idx1-ubyte", np.array([*range(10), 3, 0], dtype=np.uint8))
    client = make(mnist_raw=raw)
    save(client, 3, 1, 1, **code())
    body = client.get("/api/progress", headers={"X-Teacher-Key": KEY}).json()
    assert body["leakage_note"] is None
    assert [f["file"] for f in body["flagged"]] == ["3-1-1.png"]
    assert body["flagged"][0]["distance"] == 0.0
    assert body["flagged"][0]["nearest_label"] == 3


def test_rate_limits_per_client(make: Callable[..., TestClient]) -> None:
    client = make(limits={"predict_limit": "3/minute", "auth_failure_limit": "2/minute"})
    image = {"image": ("d.png", digit_png(5), "image/png")}
    codes = [client.post("/api/predict", files=image, headers=code()).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = client.post("/api/predict", files=image, headers=code())
    assert "too many requests" in limited.json()["error"]
    assert limited.headers["retry-after"] == "1"
    # Guessing the code is throttled too.
    guesses = [client.get("/api/info", headers={"X-Class-Code": f"guess-{i}"}) for i in range(3)]
    assert [g.status_code for g in guesses] == [401, 401, 429]


def test_folder_size_cap(make: Callable[..., TestClient], tmp_path: Path) -> None:
    one = len(digit_png(3, seed=3))
    client = make(max_folder_bytes=int(one * 1.5))
    assert save(client, 3, 1, 1, **code()).status_code == 201
    token_file = tmp_path / "collected" / ".member-tokens.json"
    full = save(client, 4, 2, 1, **code())
    assert full.status_code == 507
    assert full.json()["error"].startswith("the collection folder is full (")
    assert not (tmp_path / "collected" / "4-2-1.png").exists()
    assert set(json.loads(token_file.read_text())["members"]) == {"1-1"}  # no token for 2-1
    # Outside class mode the cap holds as well.
    plain = TestClient(create_app(tmp_path / "plain", None, max_folder_bytes=10))
    r = plain.post(
        "/api/digits",
        data={"digit": "1", "group": "1", "member": "1"},
        files={"image": ("d.png", digit_png(1), "image/png")},
    )
    assert r.status_code == 507


def test_no_code_token_or_key_in_the_logs(
    make: Callable[..., TestClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = make()
    client.get("/api/info", headers={"X-Class-Code": "wrong-code"})
    token = save(client, 3, 1, 1, **code()).json()["member_token"]
    save(client, 4, 1, 1, **code(**{"X-Member-Token": token}))
    save(client, 5, 1, 1, **code(**{"X-Member-Token": "forged-token"}))
    client.get("/api/progress", headers={"X-Teacher-Key": KEY})
    assert "saved 3-1-1.png" in caplog.text
    for secret in (CODE, token, KEY, "wrong-code", "forged-token"):
        assert secret not in caplog.text


def test_bad_class_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="class code must be 4-64"):
        ClassMode("a b", KEY)
    with pytest.raises(ValueError, match="teacher key must be"):
        ClassMode(CODE, "short")
    with pytest.raises(ValueError, match="save-limit must look like"):
        ClassMode(CODE, KEY, save_limit="lots")


def test_a_network_address_without_a_class_code_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "d"
    with pytest.raises(SystemExit) as exit_:
        collect_cli.main(["--dir", str(folder), "--host", "0.0.0.0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "give --class-code CODE" in err
    assert not folder.exists()
    # The teacher key alone does not make class mode.
    assert collect_cli.cli.__name__ == "cli"
    from mnistgap.cli import run_stage

    argv = ["--dir", str(folder), "--teacher-key", KEY]
    assert run_stage("collect", collect_cli.main, argv) == 1
    assert "--teacher-key needs class mode" in capsys.readouterr().err


def test_a_corrupt_token_file_is_a_one_line_error(tmp_path: Path) -> None:
    folder = tmp_path / "collected"
    folder.mkdir()
    (folder / ".member-tokens.json").write_text("{not json")
    with pytest.raises(ValueError, match="is not a member-token file"):
        create_app(folder, None, class_mode=ClassMode(CODE, KEY))


def test_concurrent_readings_are_batched_and_match_single_ones(tmp_path: Path) -> None:
    import threading

    import torch

    from mnistgap.collect.app import Reader
    from mnistgap.models import MLP, save_checkpoint
    from mnistgap.params import ModelParams

    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    save_checkpoint(path, MLP([16], 0.0), ModelParams(model="mlp", hidden=[16], dropout=0.0))
    reader = Reader.load(path, "rot")
    images = [loader.read_digit(digit_png(d % 10, seed=d), "mnist", Filter()) for d in range(40)]
    alone = [reader.read(img) for img in images]
    batches: list[int] = []
    original = reader._read_batch

    def counting(batch):  # record batch sizes, slowly enough for the others to queue up
        batches.append(len(batch))
        threading.Event().wait(0.01)
        original(batch)

    reader._read_batch = counting  # type: ignore[method-assign]
    together: list[Any] = [None] * len(images)

    def read(i: int) -> None:
        together[i] = reader.read(images[i])

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(batches) == len(images)
    assert len(batches) < len(images)  # at least one pass read several images
    assert [r.prediction for r in together] == [r.prediction for r in alone]
    for a, b in zip(together, alone, strict=True):
        assert np.allclose(a.probabilities, b.probabilities, atol=2e-4)
