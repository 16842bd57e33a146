"""Peer for bench/optim.ts: one optimizer step with PyTorch on the CPU, as kohya runs it.

Reads {"tensors": [[rows, cols], ...]} as JSON on stdin (random f32 parameters and gradients)
and prints one JSON line {"torch", "threads", "adamw": s, "sgd": s, "clip": s}: median seconds of
one torch.optim.AdamW step, one torch.optim.SGD(momentum=0.9, nesterov=True) step, and one
torch.nn.utils.clip_grad_norm_ over all the tensors (after a warm-up step).
"""
import json
import sys
import time

import torch


def median_time(fn, iters=3):
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    spec = json.loads(sys.stdin.read())
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(r, c)) for r, c in spec["tensors"]]
    for p in params:
        p.grad = torch.randn_like(p) * 0.01
    adamw = torch.optim.AdamW(params, lr=1e-4)
    sgd = torch.optim.SGD(params, lr=1e-4, momentum=0.9, nesterov=True)
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "adamw": median_time(adamw.step),
        "sgd": median_time(sgd.step),
        "clip": median_time(lambda: torch.nn.utils.clip_grad_norm_(params, 1.0)),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
