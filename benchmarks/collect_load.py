"""Bounded load test of mnistgap-collect on 127.0.0.1: a class at once, every file once.

    python benchmarks/collect_load.py [--clients 60] [--seconds 10] [--saves 10]
                                      [--interval 0.2] [--model models/model.pt]
    python benchmarks/collect_load.py --scenario burst [--clients 20] [--saves 10]

Starts the real command (``mnistgap-collect``, a child process: one uvicorn worker) on a free
127.0.0.1 port with an empty temporary ``--dir`` and the given checkpoint.

``class`` (default): class mode on (a class code; the per-client limits raised, since all
clients share the address 127.0.0.1). ``--clients`` threads, each with its own keep-alive
connection and its own group, draw like a student: a live reading (``/api/predict``) every
``--interval`` s for ``--seconds`` s, and ``--saves`` digits saved along the way (the first
save's member token sent with the later ones). Then all clients post one and the same name at
once: exactly one may win, the others lack that member's token (403).

``burst``: no class mode; ``--clients`` threads post ``--saves`` digits each as fast as they
can, then one and the same name at once (one 201, the others 409).

Checks that every distinct save got 201 and is on disk exactly once, byte for byte, with no
temporary file left; that no request got a 5xx or no answer; in class mode, that neither the
class code nor any member token appears in the server's log. Prints the counts and the
latency p50/p95/max of predictions and saves. Traffic goes to 127.0.0.1 only, and the run is
bounded (requests x 30 s timeout at worst).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from mnistgap.collect.loader import saved_digits
from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import digit_png

CLASS_CODE = "load-test-code"
# All clients share 127.0.0.1, so the per-client limits would throttle the whole class as one.
UNLIMITED = ["--predict-limit", "100000/second", "--save-limit", "100000/minute"]
UNLIMITED += ["--read-limit", "100000/minute"]
PNG = "image/png"


@dataclass
class Load:
    """What the clients saw: (kind, status, seconds) per request, and what they saved."""

    requests: list[tuple[str, int, float]] = field(default_factory=list)
    sent: dict[str, bytes] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests.append((kind, status, seconds))

    def codes(self, kind: str) -> Counter:
        return Counter(s for k, s, _ in self.requests if k == kind)

    def latencies_ms(self, kind: str) -> list[float]:
        return sorted(1000 * t for k, _, t in self.requests if k == kind)


def _post(http: httpx.Client, load: Load, kind: str, path: str, **kwargs) -> httpx.Response | None:
    t0 = time.perf_counter()
    try:
        r = http.post(path, **kwargs)
    except httpx.HTTPError:
        load.record(kind, 0, time.perf_counter() - t0)  # no answer at all
        return None
    load.record(kind, r.status_code, time.perf_counter() - t0)
    return r


def student(
    url: str,
    load: Load,
    group: int,
    seconds: float,
    saves: int,
    interval: float,
    start: threading.Barrier,
) -> None:
    """One student: a live reading every ``interval`` s, ``saves`` digits along the way."""
    headers = {"X-Class-Code": CLASS_CODE}
    ticks = max(1, round(seconds / interval))
    save_every = max(1, ticks // saves)
    # Drawn before the clock starts: rendering a PNG costs the load generator ~3 ms, which on
    # a 2-core machine would be taken from the server. The live readings of a digit send
    # the drawing that will be saved (the page sends the canvas as it grows).
    drawings = [digit_png(d, seed=1000 * group + d) for d in range(10)]
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        http.get("/api/info")  # open the connection before the clock starts
        start.wait()
        t0 = time.perf_counter()
        digit = 0
        for tick in range(ticks):
            delay = t0 + tick * interval - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            image = drawings[digit % 10]
            _post(http, load, "predict", "/api/predict", files={"image": ("d.png", image, PNG)})
            if (tick + 1) % save_every == 0 and digit < saves:
                fields = {"digit": str(digit), "group": str(group), "member": "1"}
                r = _post(
                    http, load, "save", "/api/digits", data=fields,
                    files={"image": ("d.png", image, PNG)},
                )  # fmt: skip
                if r is not None and r.status_code == 201:
                    with load.lock:
                        load.sent[f"{digit}-{group}-1.png"] = image
                    token = r.json().get("member_token")
                    if token:
                        http.headers["X-Member-Token"] = token
                        with load.lock:
                            load.tokens.append(token)
                digit += 1


def burst(url: str, load: Load, kind: str, jobs: list[list[dict[str, str]]], code: bool) -> None:
    """One thread per job list, all released together, each posting its saves at once."""
    start = threading.Barrier(len(jobs))
    headers = {"X-Class-Code": CLASS_CODE} if code else {}

    def client(todo: list[dict[str, str]]) -> None:
        with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
            http.get("/api/info")
            start.wait()
            for fields in todo:
                image = digit_png(int(fields["digit"]), seed=int(fields["seed"]))
                data = {k: v for k, v in fields.items() if k != "seed"}
                r = _post(
                    http, load, kind, "/api/digits", data=data,
                    files={"image": ("d.png", image, PNG)},
                )  # fmt: skip
                if r is not None and r.status_code == 201 and kind == "save":
                    with load.lock:
                        load.sent[f"{data['digit']}-{data['group']}-{data['member']}.png"] = image

    threads = [threading.Thread(target=client, args=(todo,)) for todo in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Outcome:
    lines: list[str]
    ok: bool


def run(
    model: Path,
    scenario: str = "class",
    clients: int = 60,
    seconds: float = 10.0,
    saves: int = 10,
    interval: float = 0.2,
) -> Outcome:
    """Run one scenario against a fresh server; the report lines and whether all checks hold."""
    load = Load()
    lines: list[str] = []
    class_mode = scenario == "class"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "collected"
        log = Path(tmp) / "server.log"
        with running_server(
            folder,
            model,
            log_file=log,
            class_code=CLASS_CODE if class_mode else None,
            extra_args=UNLIMITED if class_mode else (),
        ) as url:
            t0 = time.perf_counter()
            if class_mode:
                start = threading.Barrier(clients)
                threads = [
                    threading.Thread(
                        target=student,
                        args=(url, load, c + 1, seconds, saves, interval, start),
                    )
                    for c in range(clients)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            else:
                jobs = [
                    [
                        {"digit": str(d), "group": str(c + 1), "member": "1", "seed": str(c + d)}
                        for d in range(saves)
                    ]
                    for c in range(clients)
                ]
                burst(url, load, "save", jobs, code=False)
            wall = time.perf_counter() - t0
            same = {"digit": "5", "group": "999", "member": "1"}
            burst(
                url, load, "contention",
                [[{**same, "seed": str(i)}] for i in range(clients)], code=class_mode,
            )  # fmt: skip
        server_log = log.read_text(errors="replace")

        on_disk = [name for name, _ in saved_digits(folder)]
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".collect-")]
        exact = all((folder / name).read_bytes() == image for name, image in load.sent.items())
        expected = clients * saves
        saves_ok = load.codes("save") == Counter({201: expected})
        files_ok = sorted(on_disk) == sorted([*load.sent, "5-999-1.png"])
        loser = 403 if class_mode else 409
        contention = load.codes("contention")
        contention_ok = contention == Counter({201: 1, loser: clients - 1})
        failures = sum(1 for _, s, _ in load.requests if s >= 500 or s == 0)
        leaked = [s for s in [CLASS_CODE, *load.tokens] if s in server_log] if class_mode else []

        mode = "class mode" if class_mode else "no class code"
        lines.append(f"scenario {scenario} ({mode}), {clients} clients, one uvicorn worker")
        for kind in ("predict", "save"):
            lat = load.latencies_ms(kind)
            if not lat:
                continue
            codes = dict(sorted(load.codes(kind).items()))
            lines.append(
                f"  {kind}: {len(lat)} requests in {wall:.1f} s ({len(lat) / wall:.0f}/s), "
                f"status {codes}; latency ms p50 {percentile(lat, 50):.1f}, "
                f"p95 {percentile(lat, 95):.1f}, max {lat[-1]:.1f}"
            )
        lines.append(
            f"  on disk: {len(on_disk) - 1} of {expected} distinct files (+1 from the contention"
            f" round), each once, byte-identical: {exact}, temporary files left: {len(leftovers)}"
        )
        lines.append(
            f"  same name from {clients} clients at once: {dict(sorted(contention.items()))}"
        )
        lines.append(f"  5xx or no answer: {failures}")
        if class_mode:
            lines.append(
                f"  class code or member tokens in the server log: {len(leaked)} "
                f"(of {1 + len(load.tokens)} secrets)"
            )
        ok = (
            saves_ok
            and files_ok
            and exact
            and not leftovers
            and contention_ok
            and failures == 0
            and not leaked
        )
    lines.append("OK" if ok else "FAILED")
    return Outcome(lines, ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", choices=("class", "burst"), default="class")
    ap.add_argument("--clients", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=10.0, help="class: drawing time")
    ap.add_argument("--saves", type=int, default=10, help="per client (at most 10 digits)")
    ap.add_argument("--interval", type=float, default=0.2, help="class: s between readings")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    args = ap.parse_args()
    if not 1 <= args.saves <= 10 or not 1 <= args.clients <= 100:
        sys.exit("--saves must be 1-10 and --clients 1-100")
    if not 0.5 <= args.seconds <= 120 or not 0.05 <= args.interval <= args.seconds:
        sys.exit("--seconds must be 0.5-120 and --interval 0.05-seconds")
    if not args.model.is_file():
        sys.exit(f"no checkpoint at {args.model}: run `dvc repro` or pass --model")
    outcome = run(args.model, args.scenario, args.clients, args.seconds, args.saves, args.interval)
    print("\n".join(outcome.lines))
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
