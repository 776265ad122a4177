"""Sharing a DVC project through an SSH remote, against a real sshd on 127.0.0.1 (slow).

What docs/sharing.md tells a team or class to do, end to end: the test starts Debian's
``sshd`` (openssh-server) as the current user with its own config, host key and authorized
key in tmp_path, on a free 127.0.0.1 port, then

1. clone A runs a small two-stage pipeline (a persisted raw folder, a "model", metrics),
   adds an ``ssh://`` remote (url and port committed, the key file in ``--local`` config),
   ``dvc push``-es and ``git push``-es to a bare repository;
2. a fresh clone B ``dvc pull``-s: every output byte for byte, ``dvc status`` clean and
   ``dvc repro`` runs no stage;
3. A runs an experiment (``dvc exp run -S epochs=3``) and ``dvc exp push``-es it; B ``dvc exp
   pull``-s it, applies it (its model comes from the SSH remote) and ``dvc metrics diff``
   shows the change.

The pipeline is a stand-in (a few lines of Python per stage) so that the test takes seconds;
the real pipeline's push -> fresh clone -> pull -> nothing to run is .ci/run's check.
Nothing outside tmp_path is touched: HOME points into it (known_hosts, the key, git's user).
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

PREPARE = """\
import pathlib
raw = pathlib.Path("data/raw")
raw.mkdir(parents=True, exist_ok=True)
if not (raw / "source.txt").exists():  # persisted: a valid copy is reused
    (raw / "source.txt").write_text("".join(f"{i}\\n" for i in range(1000)))
pathlib.Path("data/train.txt").write_text((raw / "source.txt").read_text()[:2000])
"""
TRAIN = """\
import json, pathlib, yaml
epochs = yaml.safe_load(open("params.yaml"))["epochs"]
rows = pathlib.Path("data/train.txt").read_text().split()
pathlib.Path("models").mkdir(exist_ok=True)
pathlib.Path("models/model.bin").write_bytes(bytes([epochs % 256]) * 4096 + bytes(len(rows)))
pathlib.Path("metrics.json").write_text(json.dumps({"accuracy": round(1 - 0.5 / epochs, 4)}))
"""


def dvc_yaml(python: str) -> str:
    return f"""\
stages:
  prepare:
    cmd: {python} prepare.py
    deps: [prepare.py]
    outs:
      - data/raw:
          persist: true
      - data/train.txt
  train:
    cmd: {python} train.py
    deps: [train.py, data/train.txt]
    params: [epochs]
    outs: [models/model.bin]
    metrics:
      - metrics.json:
          cache: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run ``cmd``; its stdout+stderr, or a failure that shows them."""
    proc = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    out = proc.stdout + proc.stderr
    print(f"$ {' '.join(cmd[2:] if cmd[:2] == [sys.executable, '-m'] else cmd)}\n{out}")
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{out}"
    return out


def dvc(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd, env)


def git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    return run(["git", *args], cwd, env)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A running sshd on 127.0.0.1 that accepts one generated key for the current user."""
    if not Path(SSHD).is_file():
        if os.environ.get("MNISTGAP_REQUIRE_SSHD") == "1":
            pytest.fail("sshd not found (MNISTGAP_REQUIRE_SSHD=1)")
        pytest.skip("needs sshd: apt-get install openssh-server")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    etc = tmp_path / "sshd"
    etc.mkdir()
    key = home / ".ssh" / "id_test"
    for path in (etc / "host_key", key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    shutil.copy(f"{key}.pub", etc / "authorized_keys")
    port = free_port()
    (etc / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {etc / 'host_key'}\n"
        f"PidFile {etc / 'sshd.pid'}\nAuthorizedKeysFile {etc / 'authorized_keys'}\n"
        "UsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n"
    )
    host_key = (etc / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    (home / ".gitconfig").write_text("[user]\n\tname = Test\n\temail = test@localhost\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # root's sshd needs its privilege-separation dir
    log = etc / "sshd.log"
    proc = subprocess.Popen([SSHD, "-D", "-f", str(etc / "sshd_config"), "-E", str(log)])
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"sshd did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
        yield {"port": port, "key": key, "home": home, "user": getpass.getuser(), "log": log}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_pull_and_experiments_through_an_ssh_remote(
    tmp_path: Path, sshd: dict[str, object]
) -> None:
    env = {
        **os.environ,
        "HOME": str(sshd["home"]),
        "DVC_NO_ANALYTICS": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    env.pop("DVC_SITE_CACHE_DIR", None)
    origin = tmp_path / "origin.git"
    git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path, env=env)
    remote = tmp_path / "remote-storage"
    remote.mkdir()

    a = tmp_path / "a"
    a.mkdir()
    git("init", "-q", "-b", "main", cwd=a, env=env)
    (a / "prepare.py").write_text(PREPARE)
    (a / "train.py").write_text(TRAIN)
    (a / "params.yaml").write_text("epochs: 1\n")
    (a / "dvc.yaml").write_text(dvc_yaml(sys.executable))
    dvc("init", "-q", cwd=a, env=env)
    dvc("repro", cwd=a, env=env)
    # What docs/sharing.md says: the remote's address in the committed config, each user's
    # key file in their own --local config.
    url = f"ssh://{sshd['user']}@127.0.0.1{remote}"
    dvc("remote", "add", "-d", "class", url, cwd=a, env=env)
    dvc("remote", "modify", "class", "port", str(sshd["port"]), cwd=a, env=env)
    dvc("remote", "modify", "--local", "class", "keyfile", str(sshd["key"]), cwd=a, env=env)
    dvc("remote", "modify", "--local", "class", "ask_password", "false", cwd=a, env=env)
    git("add", "-A", cwd=a, env=env)
    git("commit", "-qm", "pipeline and its results", cwd=a, env=env)
    git("remote", "add", "origin", str(origin), cwd=a, env=env)
    git("push", "-q", "origin", "main", cwd=a, env=env)
    pushed = dvc("push", cwd=a, env=env)
    assert "pushed" in pushed
    assert any((remote / "files" / "md5").rglob("*")), "nothing arrived on the SSH remote"
    assert "Accepted publickey" in Path(str(sshd["log"])).read_text()

    b = tmp_path / "b"
    git("clone", "-q", str(origin), str(b), cwd=tmp_path, env=env)
    dvc("remote", "modify", "--local", "class", "keyfile", str(sshd["key"]), cwd=b, env=env)
    assert not (b / "models" / "model.bin").exists()
    dvc("pull", cwd=b, env=env)
    for out in ("models/model.bin", "data/train.txt", "data/raw/source.txt"):
        assert (b / out).read_bytes() == (a / out).read_bytes(), out
    assert "Data and pipelines are up to date" in dvc("status", cwd=b, env=env)
    repro = dvc("repro", cwd=b, env=env)
    assert "Running stage" not in repro
    assert repro.count("didn't change, skipping") == 2

    # An experiment and its model travel from A to B.
    dvc("exp", "run", "-n", "three-epochs", "-S", "epochs=3", cwd=a, env=env)
    model_a = (a / "models" / "model.bin").read_bytes()
    dvc("exp", "push", "origin", "three-epochs", cwd=a, env=env)
    pulled = dvc("exp", "pull", "origin", "three-epochs", cwd=b, env=env)
    assert "three-epochs" in pulled
    listed = dvc("exp", "list", cwd=b, env=env)
    assert "three-epochs" in listed
    dvc("exp", "apply", "three-epochs", cwd=b, env=env)
    assert (b / "models" / "model.bin").read_bytes() == model_a
    diff = dvc("metrics", "diff", "--json", cwd=b, env=env)
    change = json.loads(diff[diff.index("{") :])["metrics.json"]["accuracy"]
    assert change == {"old": 0.5, "new": 0.8333, "diff": pytest.approx(0.3333, abs=1e-4)}
    print(dvc("metrics", "diff", cwd=b, env=env))
