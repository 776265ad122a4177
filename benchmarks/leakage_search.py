"""The leakage check's nearest-neighbour search: ours vs torch.cdist + topk, same chunking.

    python benchmarks/leakage_search.py [--queries 2000] [--references 60000] [--chunk 512]

Both search every query row against every reference row (D = 784), QUERY chunk rows at a
time: (a) mnistgap.leakage.two_nearest_neighbours (one addmm per chunk ranking by
|b|^2/2 - a.b, then argmin twice, which returns the lowest index on ties); (b) torch.cdist
per chunk, then topk(2, largest=False). Prints the seconds of each and whether (b) returns
the lowest index on exact ties, as the leakage check's tests require.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mnistgap.leakage import two_nearest_neighbours


def cdist_topk(query: torch.Tensor, reference: torch.Tensor, chunk: int) -> torch.Tensor:
    out = []
    for start in range(0, len(query), chunk):
        d = torch.cdist(query[start : start + chunk], reference)
        out.append(d.topk(2, dim=1, largest=False).indices)
    return torch.cat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--references", type=int, default=60000)
    ap.add_argument("--chunk", type=int, default=512)
    args = ap.parse_args()
    gen = torch.Generator().manual_seed(0)
    reference = torch.rand(args.references, 784, generator=gen)
    query = torch.rand(args.queries, 784, generator=gen)
    for name, fn in (
        ("ours: addmm + argmin", lambda: two_nearest_neighbours(query, reference, args.chunk)),
        ("torch.cdist + topk", lambda: cdist_topk(query, reference, args.chunk)),
    ):
        t0 = time.perf_counter()
        fn()
        print(f"{name:<22} {time.perf_counter() - t0:6.2f} s", flush=True)
    # Exact ties: three copies of row 7; the lowest two indices must come back.
    reference[[9, 1200, 2500]] = reference[7].clone()
    _, ours = two_nearest_neighbours(reference[[2500]], reference, args.chunk)
    theirs = cdist_topk(reference[[2500]], reference, args.chunk)
    print(f"ties -> ours {ours[0].tolist()}, cdist+topk {sorted(theirs[0].tolist())} (want [7, 9])")


if __name__ == "__main__":
    main()
