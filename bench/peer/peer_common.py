"""Shared by the PyTorch peers: the device to run on and a synchronised median timer.

LORAKIT_PEER_DEVICE (default "cpu") selects the device; on a GPU machine "cuda" makes every
tensor the peers create live there (torch.set_default_device) and the timer synchronises.
"""
import os
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
