"""Peer for bench/unet.ts: the SD 1.5 U-Net forward and the VAE decode in PyTorch (sd_torch.py).

Reads {"cases": [{"name", "model": "unet" | "vae", "latent", "dtype": "f32" | "f16", "iters"}]}
as JSON on stdin; prints one JSON line {"torch", "threads", "device", "params": {"unet", "vae"},
"<name>": {"seconds"} | {"skipped": why}}. Batch 1, forward only under torch.no_grad, random
weights, text context [1, 77, 768], timestep 500; seconds are the median after one warm-up run.
On cuda each case also gets "peak_bytes" (torch.cuda.max_memory_allocated, weights included).
f16 runs only on cuda: PyTorch 1.13 has no f16 conv2d on the CPU. PyTorch's defaults otherwise
(on cuda: TF32 convolutions, full-f32 matmuls; no cudnn.benchmark).
"""
import json

import torch

from peer_common import DEVICE, median_time, read_spec
from sd_torch import UNet, VaeDecoder, param_count

DTYPES = {"f32": torch.float32, "f16": torch.float16}


def run_case(model, case, dtype):
    n = case["latent"]
    latents = torch.randn(1, 4, n, n, dtype=dtype)
    if case["model"] == "unet":
        t = torch.tensor([500])
        ctx = torch.randn(1, 77, 768, dtype=dtype)

        def fn():
            return model(latents, t, ctx)
    else:

        def fn():
            return model(latents)

    def step():
        with torch.no_grad():
            fn()

    out = {}
    if DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    out["seconds"] = median_time(step, case.get("iters", 1))
    if DEVICE.startswith("cuda"):
        out["peak_bytes"] = torch.cuda.max_memory_allocated()
    return out


def main():
    spec = read_spec()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": DEVICE,
           "params": {}}
    # One model at a time, f32 cases before f16 ones (the model is converted in place).
    for kind, build in (("unet", UNet), ("vae", VaeDecoder)):
        cases = [c for c in spec["cases"] if c["model"] == kind]
        if not cases:
            continue
        model = build().eval()
        out["params"][kind] = param_count(model)
        for name in ("f32", "f16"):
            todo = [c for c in cases if c["dtype"] == name]
            if not todo:
                continue
            if name == "f16" and DEVICE == "cpu":
                for c in todo:
                    out[c["name"]] = {"skipped": "torch has no f16 conv2d on the CPU"}
                continue
            model.to(DTYPES[name])
            for c in todo:
                out[c["name"]] = run_case(model, c, DTYPES[name])
        del model
        if DEVICE.startswith("cuda"):
            torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
