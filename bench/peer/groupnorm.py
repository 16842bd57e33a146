"""Peer for bench/groupnorm.ts: GroupNorm(32) + SiLU with PyTorch on the CPU.

Reads {"n", "c", "h", "w", "groups", "iters"} as JSON on stdin and prints one JSON line
{"torch": version, "threads": n, "forward": s, "backward": s} with median seconds.
"""
import json

import torch

from peer_common import forward_backward_times, read_spec


def main():
    spec = read_spec()
    n, c, h, w, g = (spec[k] for k in ("n", "c", "h", "w", "groups"))
    iters = spec.get("iters", 5)
    x = torch.randn(n, c, h, w, requires_grad=True)
    wt = torch.randn(c, requires_grad=True)
    b = torch.randn(c, requires_grad=True)

    def norm_silu(x, wt, b):
        return torch.nn.functional.silu(torch.nn.functional.group_norm(x, g, wt, b, 1e-5))

    print(json.dumps(forward_backward_times(norm_silu, (x, wt, b), iters)))


if __name__ == "__main__":
    main()
