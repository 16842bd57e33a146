"""Peer for bench/gen.ts: kohya gen_img's loop on an sd1-tiny-shaped model in plain PyTorch.

The U-Net and VAE decoder are sd_torch.py's at sd1-tiny's widths (channels 32/64/64/64, 2 heads,
context 32, time embedding 128), random weights, so the work matches lorakit's run on the real
sd1-tiny file; the 3-layer, width-32 text encoder is replaced by a random context (under 1% of
the work). Per batch: start noise, `steps` Euler-ancestral steps with classifier-free guidance
(the U-Net on [negative; prompt], batch 2B), the sampler noise drawn up front, then the decode.

Reads {"batches": [B, ...], "steps", "latent", "iters"} on stdin; prints one JSON line
{"torch", "threads", "device", "b<B>": {"seconds"}} with median seconds per batch.
"""
import json

import torch

from peer_common import DEVICE, median_time, read_spec
from sd_torch import UNet, VaeDecoder

TINY = {"ch": (32, 64, 64, 64), "attn": (True, True, True, False), "heads": 2, "ctx": 32}


def sigmas_for(steps):
    """Euler-ancestral sigmas for kohya's scaled-linear schedule (steps_offset 1, leading)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    ratio = 1000 // steps
    ts = (torch.arange(steps) * ratio).flip(0) + 1
    sig = ((1 - ac) / ac) ** 0.5
    s = torch.cat([sig[ts], torch.zeros(1, dtype=torch.float64)])
    return ts, s.float()


def generate(unet, vae, batch, steps, latent, scale=7.5):
    ts, sig = sigmas_for(steps)
    ctx = torch.randn(2 * batch, 77, 32)
    lat = torch.randn(batch, 4, latent, latent) * sig[0]
    noises = [torch.randn(batch, 4, latent, latent) for _ in range(steps)]
    for i in range(steps):
        s, s_next = sig[i], sig[i + 1]
        x = torch.cat([lat, lat]) / (s ** 2 + 1) ** 0.5
        eps_u, eps_c = unet(x, ts[i:i + 1].repeat(2 * batch), ctx).chunk(2)
        eps = eps_u + scale * (eps_c - eps_u)
        s_up = (s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2) ** 0.5
        s_down = (s_next ** 2 - s_up ** 2) ** 0.5
        lat = lat + eps * (s_down - s) + noises[i] * s_up
    return vae(lat / 0.18215)


def main():
    spec = read_spec()
    unet = UNet(**TINY).eval()
    vae = VaeDecoder(ch=TINY["ch"]).eval()
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": DEVICE}
    for b in spec["batches"]:
        def run():
            with torch.no_grad():
                generate(unet, vae, b, spec["steps"], spec["latent"])
        out[f"b{b}"] = {"seconds": median_time(run, spec.get("iters", 3))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
