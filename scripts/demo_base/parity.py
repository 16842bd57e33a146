"""Parity check input: random weights of the PyTorch networks and their outputs on fixed inputs,
which scripts/demo_base/parity.ts compares with lorakit's U-Net and VAE on the same weights.

Usage: python3 scripts/demo_base/parity.py <out_dir>
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from sd_models import AutoencoderKL, UNet2DConditionModel  # noqa: E402

out = sys.argv[1]
torch.manual_seed(0)
unet, vae = UNet2DConditionModel(), AutoencoderKL()
with torch.no_grad():
    for m in (unet, vae):
        for name, p in m.named_parameters():
            if p.ndim == 1:  # norms and biases away from their trivial initial values
                p.add_(0.1 * torch.randn_like(p))
x = torch.randn(2, 4, 8, 8)
ctx = torch.randn(2, 77, 32)
t = torch.tensor([10, 500])
img = torch.rand(2, 3, 64, 64) * 2 - 1
with torch.no_grad():
    eps = unet(x, t, ctx)
    mean, _ = vae.encode(img)
    dec = vae.decode(x)
w = {"unet." + k: v.numpy() for k, v in unet.state_dict().items()}
w.update({"vae." + k: v.numpy() for k, v in vae.state_dict().items()})
st_io.write(os.path.join(out, "weights.safetensors"), w)
st_io.write(os.path.join(out, "io.safetensors"), {
    "x": x.numpy(), "ctx": ctx.numpy(), "img": img.numpy(), "eps": eps.numpy(),
    "mean": mean.numpy(), "dec": dec.numpy()})
print("wrote", out)
