"""Peer for bench/groupnorm.ts: GroupNorm(32) + SiLU with PyTorch on the CPU.

Reads {"n", "c", "h", "w", "groups", "iters"} as JSON on stdin and prints one JSON line
{"torch": version, "threads": n, "forward": s, "backward": s} with median seconds.
"""
import json
import os
import sys

import torch

from peer_common import DEVICE, median_time


def main():
    spec = json.loads(sys.stdin.read())
    if DEVICE == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    n, c, h, w, g = (spec[k] for k in ("n", "c", "h", "w", "groups"))
    iters = spec.get("iters", 5)
    x = torch.randn(n, c, h, w, requires_grad=True)
    wt = torch.randn(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)

    def fwd():
        with torch.no_grad():
            torch.nn.functional.silu(torch.nn.functional.group_norm(x, g, wt, b, 1e-5))

    y = torch.nn.functional.silu(torch.nn.functional.group_norm(x, g, wt, b, 1e-5))
    gy = torch.randn_like(y)

    def bwd():
        torch.autograd.grad(y, (x, wt, b), gy, retain_graph=True)

    print(json.dumps({
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "forward": median_time(fwd, iters),
        "backward": median_time(bwd, iters),
    }))


if __name__ == "__main__":
    main()
