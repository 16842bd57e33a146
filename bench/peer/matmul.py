"""Peer for bench/matmul.ts: the same matrix products with PyTorch (and numpy) on the CPU.

Reads {"sizes": [n, ...], "iters": k} as JSON on stdin and prints one JSON line
{"torch": version, "threads": t, "f32": {n: s}, "f16": {n: s or error}, "numpy": {n: s}} with
median seconds of an n x n x n product. PyTorch 1.13 has no f16 matmul on the CPU
("addmm_impl_cpu_" not implemented for 'Half'); the f16 entry records the error it raises.
"""
import json

import numpy
import torch

from peer_common import median_time, read_spec


def main():
    spec = read_spec()
    iters = spec.get("iters", 3)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "f32": {}, "f16": {}, "numpy": {}}
    for n in spec["sizes"]:
        a, b = torch.randn(n, n), torch.randn(n, n)
        out["f32"][str(n)] = median_time(lambda: torch.mm(a, b), iters)
        try:
            ah, bh = a.half(), b.half()
            out["f16"][str(n)] = median_time(lambda: torch.mm(ah, bh), iters)
        except RuntimeError as e:
            out["f16"][str(n)] = str(e)
        an, bn = a.cpu().numpy(), b.cpu().numpy()
        out["numpy"][str(n)] = median_time(lambda: an @ bn, iters)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
