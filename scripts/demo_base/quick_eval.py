"""A quick PyTorch estimate of the caption accuracy, to follow a U-Net run while it trains.

Usage: python3 scripts/demo_base/quick_eval.py <work_dir> <unet.safetensors> [--seed S]
Samples the 50 held-out prompts (the last 50 captions of world.safetensors, in
heldOutPrompts() order) with DDIM 20 steps and guidance 5 as evaluate.ts does, decodes with
<work_dir>/vae.safetensors and reads the colours with the pixel-colour test of world.ts
(readScene: the border's majority palette colour, then the majority of the rest). The noise
differs from lorakit's, so the figure is an estimate; evaluate.ts gives the real one.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from sd_models import AutoencoderKL, UNet2DConditionModel  # noqa: E402
from train import SCALE, ddpm_alphas_cumprod, load_vae  # noqa: E402

PALETTE = {
    "red": (220, 30, 30), "green": (30, 170, 50), "blue": (30, 70, 220),
    "yellow": (240, 220, 30), "purple": (140, 50, 190), "white": (245, 245, 245),
    "black": (15, 15, 15), "orange": (255, 140, 0),
}


def read_scene(img):
    """img: u8 HxWx3 -> (background, object) as world.ts's readScene."""
    names = list(PALETTE)
    cols = np.array([PALETTE[n] for n in names], dtype=np.int64)
    d = ((img.astype(np.int64)[:, :, None, :] - cols[None, None]) ** 2).sum(-1)
    k = d.argmin(-1)
    h, w = k.shape
    edge = np.zeros((h, w), bool)
    edge[:2], edge[-2:], edge[:, :2], edge[:, -2:] = True, True, True, True
    bg = np.bincount(k[edge], minlength=len(names))
    inner = np.bincount(k[~edge], minlength=len(names))
    b = int(bg.argmax())
    inner[b] = 0
    return names[b], names[int(inner.argmax())] if inner.max() > 0 else "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("unet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--guidance", type=float, default=5.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    world, meta = st_io.read(os.path.join(a.work, "world.safetensors"))
    captions = json.loads(meta["captions"])
    emb = torch.from_numpy(world["embeddings"].copy())
    held = list(range(len(captions) - 50, len(captions)))
    unet = UNet2DConditionModel()
    w, _ = st_io.read(a.unet)
    unet.load_state_dict({k[5:]: torch.from_numpy(v.copy()) for k, v in w.items()})
    unet.eval()
    vae = load_vae(os.path.join(a.work, "vae.safetensors"))
    ac = ddpm_alphas_cumprod()
    # diffusers' DDIM with SD1's "leading" spacing and steps_offset 1; eta 0.
    ts = list(range(0, 1000, 1000 // a.steps))[::-1]
    ts = [t + 1 for t in ts]
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn((50, 4, 8, 8), generator=g)
    ctx = torch.cat([emb[[0] * 50], emb[held]])
    with torch.no_grad():
        for i, t in enumerate(ts):
            eps_u, eps_c = unet(torch.cat([x, x]), torch.full((100,), t), ctx).chunk(2)
            eps = eps_u + a.guidance * (eps_c - eps_u)
            at = ac[t]
            prev = ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0)
            x0 = (x - (1 - at).sqrt() * eps) / at.sqrt()
            x = prev.sqrt() * x0 + (1 - prev).sqrt() * eps
        img = vae.decode(x / SCALE).clamp(-1, 1)
    img = ((img + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    bg_ok = obj_ok = both = 0
    for i, c in enumerate(held):
        words = captions[c].split(" ")
        bg, obj = read_scene(img[i])
        bg_ok += bg == words[5]
        obj_ok += obj == words[1]
        both += bg == words[5] and obj == words[1]
    print(f"{os.path.basename(a.unet)}: {both}/50 (background {bg_ok}, object {obj_ok}) "
          f"in {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
