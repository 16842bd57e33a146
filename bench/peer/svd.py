"""Peer for bench/svd.ts: the same SVDs with PyTorch on the CPU, as kohya runs them.

Reads {"topk": [[m, n, k], ...], "svdvals": [[m, n], ...], "shapes": [[m, n], ...]} as JSON on
stdin (Gaussian f32 matrices, seed 0) and prints one JSON line {"torch", "threads", "full": [s],
"lowrank": [s], "svdvals": [s], "shapes": [s]}: seconds of torch.linalg.svd (full_matrices=True,
kohya's call), of torch.svd_lowrank(A, q=k+8, niter=2) (null when missing), of
torch.linalg.svdvals, and of torch.linalg.svd per SD1.5 module shape (one run each).
"""
import json
import sys
import time

import torch

from peer_common import sync


def once(fn):
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t0


def main():
    spec = json.loads(sys.stdin.read())
    torch.manual_seed(0)
    full, lowrank, svdvals, shapes = [], [], [], []
    with torch.no_grad():
        for m, n, k in spec.get("topk", []):
            a = torch.randn(m, n)
            full.append(once(lambda: torch.linalg.svd(a)))
            if hasattr(torch, "svd_lowrank"):
                lowrank.append(once(lambda: torch.svd_lowrank(a, q=k + 8, niter=2)))
            else:
                lowrank.append(None)
        for m, n in spec.get("svdvals", []):
            a = torch.randn(m, n)
            svdvals.append(once(lambda: torch.linalg.svdvals(a)))
        for m, n in spec.get("shapes", []):
            a = torch.randn(m, n)
            shapes.append(once(lambda: torch.linalg.svd(a)))
    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "full": full,
        "lowrank": lowrank,
        "svdvals": svdvals,
        "shapes": shapes,
    }))


if __name__ == "__main__":
    main()
