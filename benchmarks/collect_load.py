"""Bounded load test of mnistgap-collect on 127.0.0.1: concurrent clients, every file once.

    python benchmarks/collect_load.py [--clients 20] [--uploads 10] [--model models/model.pt]

Starts the real command (``mnistgap-collect``, a child process: one uvicorn worker) on a free
127.0.0.1 port with an empty temporary ``--dir`` and the given checkpoint, then:

1. ``--clients`` threads, each with its own keep-alive connection, post ``--uploads`` distinct
   digits each (client i is group i+1, member 1, digits 0..9), all starting together;
2. the same number of threads post one and the same name at once (exactly one may win).

Checks that every distinct upload got 201 and is on disk exactly once, byte for byte, with no
temporary file left; that the contention round gave one 201 and only 409s otherwise; and that
no request got a 5xx. Prints the counts and the latency p50/p95/max per upload. Traffic goes
to 127.0.0.1 only, and the run is bounded (requests x 30 s timeout at worst).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from mnistgap.collect.loader import saved_digits
from mnistgap.collect.server import running_server
from mnistgap.collect.synthetic import digit_png


def fire(url: str, jobs: list[list[tuple[dict[str, str], bytes]]]) -> list[tuple[int, float]]:
    """Run one thread per job list, all released together; (status, seconds) per request."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()
    start = threading.Barrier(len(jobs))

    def client(todo: list[tuple[dict[str, str], bytes]]) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            http.get("/api/info")  # open the connection before the clock starts
            start.wait()
            for fields, image in todo:
                t0 = time.perf_counter()
                try:
                    status = http.post(
                        "/api/digits", data=fields, files={"image": ("d.png", image, "image/png")}
                    ).status_code
                except httpx.HTTPError:
                    status = 0  # no answer at all
                with lock:
                    results.append((status, time.perf_counter() - t0))

    threads = [threading.Thread(target=client, args=(todo,)) for todo in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--uploads", type=int, default=10, help="per client (at most 10 digits)")
    ap.add_argument("--model", type=Path, default=Path("models/model.pt"))
    args = ap.parse_args()
    if not 1 <= args.uploads <= 10 or not 1 <= args.clients <= 100:
        sys.exit("--uploads must be 1-10 and --clients 1-100")
    if not args.model.is_file():
        sys.exit(f"no checkpoint at {args.model}: run `dvc repro` or pass --model")

    sent: dict[str, bytes] = {}
    jobs = []
    for c in range(args.clients):
        todo = []
        for d in range(args.uploads):
            image = digit_png(d, seed=100 * c + d)
            fields = {"digit": str(d), "group": str(c + 1), "member": "1"}
            sent[f"{d}-{c + 1}-1.png"] = image
            todo.append((fields, image))
        jobs.append(todo)

    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "collected"
        with running_server(folder, args.model, log_file=Path(tmp) / "server.log") as url:
            t0 = time.perf_counter()
            results = fire(url, jobs)
            wall = time.perf_counter() - t0
            same = {"digit": "5", "group": "999", "member": "1"}
            contention = fire(url, [[(same, digit_png(5, seed=i))] for i in range(args.clients)])

        codes = Counter(status for status, _ in results)
        latencies = sorted(s * 1000 for _, s in results)
        on_disk = [name for name, _ in saved_digits(folder)]
        leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")]
        exact = all((folder / name).read_bytes() == image for name, image in sent.items())
        print(
            f"distinct uploads: {len(results)} requests from {args.clients} clients x "
            f"{args.uploads}, in {wall:.2f} s ({len(results) / wall:.0f} uploads/s)"
        )
        print(f"  status counts: {dict(sorted(codes.items()))}")
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        print(f"  latency ms: p50 {p50:.1f}, p95 {p95:.1f}, max {latencies[-1]:.1f}")
        expected = len(sent)
        files_ok = sorted(on_disk) == sorted([*sent, "5-999-1.png"])
        print(
            f"  on disk: {len(on_disk) - 1} of {expected} distinct files (+1 from the contention"
            f" round), byte-identical: {exact}, temporary files left: {len(leftovers)}"
        )
        c_codes = Counter(status for status, _ in contention)
        print(f"same name from {args.clients} clients at once: {dict(sorted(c_codes.items()))}")
        fives = sum(n for code, n in (codes + c_codes).items() if code >= 500 or code == 0)
        print(f"5xx or no answer: {fives}")
        ok = (
            codes == Counter({201: expected})
            and files_ok
            and exact
            and not leftovers
            and c_codes == Counter({201: 1, 409: args.clients - 1})
            and fives == 0
        )
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
