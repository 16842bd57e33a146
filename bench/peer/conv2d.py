"""Peer for bench/conv2d.ts: the same convolutions with PyTorch on the CPU.

Reads {"n", "cin", "cout", "h", "w", "k", "stride", "padding", "iters"} as JSON on stdin and
prints one JSON line {"torch": version, "threads": n, "forward": s, "backward": s} with median
seconds: forward is conv2d with bias, backward is grad input plus grad weight (and bias) of it.
Only f32 is timed: PyTorch 1.13 has no f16 convolution on the CPU.
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
    torch.manual_seed(0)
    n, cin, cout, h, w, k = (spec[key] for key in ("n", "cin", "cout", "h", "w", "k"))
    stride, pad, iters = spec["stride"], spec["padding"], spec.get("iters", 5)
    x = torch.randn(n, cin, h, w, requires_grad=True)
    wt = torch.randn(cout, cin, k, k, requires_grad=True)
    b = torch.randn(cout, requires_grad=True)

    def fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)

    y = torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)
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
