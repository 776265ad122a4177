"""Run ``mnistgap-collect`` in the background on a free local port (tests, demos, benchmarks).

    with running_server(folder, model=Path("models/model.pt")) as url:
        ...  # e.g. httpx.get(url + "/api/info")

The server is the real command in a child process (``python -m mnistgap.collect.cli``),
bound to 127.0.0.1 only, and is stopped (SIGTERM, then SIGKILL) when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, proc: subprocess.Popen, timeout_s: float, headers: Mapping[str, str] | None = None
) -> dict:
    """Poll ``url/api/info`` until it answers; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(url + "/api/info", headers=dict(headers or {}))
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"mnistgap-collect exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return json.load(resp)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"mnistgap-collect did not answer at {url}") from None
            time.sleep(0.1)


@contextlib.contextmanager
def running_server(
    folder: Path,
    model: Path | None = None,
    params: Path | None = None,
    *,
    port: int | None = None,
    log_file: Path | None = None,
    timeout_s: float = 60.0,
    class_code: str | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start ``mnistgap-collect --dir folder`` on 127.0.0.1; yield its base URL.

    ``class_code`` starts it in class mode; ``extra_args`` go on its command line as they are
    (e.g. ``["--teacher-key", KEY, "--predict-limit", "100/second"]``).
    """
    port = port or free_port()
    cmd = [sys.executable, "-m", "mnistgap.collect.cli", "--dir", str(folder)]
    cmd += ["--host", HOST, "--port", str(port)]
    if model is not None:
        cmd += ["--model", str(model)]
    if params is not None:
        cmd += ["--params", str(params)]
    if class_code is not None:
        cmd += ["--class-code", class_code]
    cmd += list(extra_args)
    url = f"http://{HOST}:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log_file.open("ab")) if log_file else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_ready(url, proc, timeout_s, {"X-Class-Code": class_code} if class_code else None)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
