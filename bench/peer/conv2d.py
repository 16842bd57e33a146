"""Peer for bench/conv2d.ts: the same convolutions with PyTorch on the CPU.

Reads {"n", "cin", "cout", "h", "w", "k", "stride", "padding", "iters"} as JSON on stdin and
prints one JSON line {"torch": version, "threads": n, "forward": s, "backward": s} with median
seconds: forward is conv2d with bias, backward is grad input plus grad weight (and bias) of it.
Only f32 is timed: PyTorch 1.13 has no f16 convolution on the CPU.
"""
import json

import torch

from peer_common import forward_backward_times, read_spec


def main():
    spec = read_spec()
    n, cin, cout, h, w, k = (spec[key] for key in ("n", "cin", "cout", "h", "w", "k"))
    stride, pad, iters = spec["stride"], spec["padding"], spec.get("iters", 5)
    x = torch.randn(n, cin, h, w, requires_grad=True)
    wt = torch.randn(cout, cin, k, k, requires_grad=True)
    b = torch.randn(cout, requires_grad=True)

    def conv(x, wt, b):
        return torch.nn.functional.conv2d(x, wt, b, stride=stride, padding=pad)

    print(json.dumps(forward_backward_times(conv, (x, wt, b), iters)))


if __name__ == "__main__":
    main()
