"""Shared by the PyTorch peers: the device to run on, reading the bench's spec, a synchronised
median timer and the forward/backward timing of one op.

LORAKIT_PEER_DEVICE (default "cpu") selects the device; on a GPU machine "cuda" makes every
tensor the peers create live there (torch.set_default_device) and the timer synchronises.
"""
import json
import os
import sys
import time

import torch

DEVICE = os.environ.get("LORAKIT_PEER_DEVICE", "cpu")
if DEVICE != "cpu":
    torch.set_default_device(DEVICE)


def sync():
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def median_time(fn, iters):
    """Median seconds of fn() over iters runs, after one warm-up run."""
    fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def read_spec():
    """The bench's JSON spec from stdin; on the CPU torch then uses every core; the seed is 0."""
    spec = json.loads(sys.stdin.read())
    if DEVICE == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    return spec


def forward_backward_times(op, inputs, iters):
    """Median seconds of op(*inputs) without autograd ("forward") and of the gradients of all
    inputs for a random upstream gradient ("backward"), with torch's version and threads."""

    def fwd():
        with torch.no_grad():
            op(*inputs)

    y = op(*inputs)
    gy = torch.randn_like(y)

    def bwd():
        torch.autograd.grad(y, inputs, gy, retain_graph=True)

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "forward": median_time(fwd, iters),
        "backward": median_time(bwd, iters),
    }
