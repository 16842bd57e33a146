"""Train the demo base model's VAE and U-Net on the synthetic world (CPU, PyTorch).

Usage: python3 scripts/demo_base/train.py <work_dir> --stage vae|colours|unet|join [--minutes M]
Reads <work_dir>/world.safetensors (export_world.ts). Stages:
  vae      VAE encoder and decoder together, then standardised: <work_dir>/vae.safetensors
  colours  continue <work_dir>/vae.safetensors on the palette and on random-colour scenes, the
           palette's latents held where they were (so a U-Net trained on them stays valid), and
           write it back
  unet     U-Net on the (now fixed) encoder's latents: <work_dir>/unet.safetensors
  join     all of it in lorakit's internal names, f32: <work_dir>/weights.safetensors

The VAE learns reconstruction (L1 + MSE + a small KL); its latents are then standardised per
channel, with the shift and scale folded into quant_conv/post_quant_conv, so that latents times
0.18215 (SD1's scale factor, which lorakit applies) have zero mean and unit variance. The U-Net
learns epsilon prediction under SD1's scaled-linear DDPM schedule on those latents, conditioned
on the fixed text-encoder outputs, with the empty caption 10% of the time for guidance.
Training runs for a wall-clock budget per stage, with fixed seeds.
"""
import argparse
import copy
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402
from sd_models import AutoencoderKL, UNet2DConditionModel  # noqa: E402

SCALE = 0.18215


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def to_float(images):
    """u8 NHWC -> float NCHW in [-1, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1).permute(0, 3, 1, 2)


def psnr(vae, images, batch=32):
    err, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            mean, _ = vae.encode(x)
            y = vae.decode(mean).clamp(-1, 1)
            # Pixels in [0, 1] as the PSNR is usually stated, after 8-bit rounding.
            a = torch.round((x + 1) * 127.5) / 255
            b = torch.round((y + 1) * 127.5) / 255
            err += float(((a - b) ** 2).sum())
            n += a.numel()
    return 10 * math.log10(1 / (err / n))


def augment(x, crop, g):
    """A VAE batch's augmentation: an aligned 32x32 crop when `crop` (a quarter of the cost per
    image; the networks are convolutional), then a horizontal flip half of the time."""
    if crop:
        oy, ox = [8 * int(v) for v in torch.randint(0, 5, (2,), generator=g)]
        x = x[:, :, oy:oy + 32, ox:ox + 32]
    if torch.rand(1, generator=g).item() < 0.5:
        x = x.flip(3)
    return x


def optimizer_step(opt, loss, lr):
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad()
    loss.backward()
    opt.step()


def train_vae(train, val, minutes, seed):
    torch.manual_seed(seed)
    vae = AutoencoderKL()
    with torch.no_grad():
        # Start with a narrow posterior (std ~0.02): with the usual std 1 the decoder first sees
        # mostly noise and the small KL weight takes long to shrink it.
        vae.quant_conv.bias[4:] = -8.0
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    end = time.time() + minutes * 60
    step, n = 0, len(train)
    g = torch.Generator().manual_seed(seed)
    while time.time() < end:
        frac = 1 - (end - time.time()) / (minutes * 60)
        idx = torch.randint(0, n, (16,), generator=g)
        # Crops for 70% of the budget, whole images for the rest.
        x = augment(train[idx], frac < 0.7, g)
        mean, logvar = vae.encode(x)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        y = vae.decode(z)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
        loss = F.l1_loss(y, x) + F.mse_loss(y, x) + 1e-4 * kl
        optimizer_step(opt, loss, 1e-3 * min(1, (step + 1) / 50) * (0.3 if frac > 0.85 else 1))
        step += 1
        if step % 50 == 0:
            log(f"vae step {step} loss {loss.item():.4f} kl {kl.item():.3f}")
    vae.eval()
    log(f"vae: {step} steps, held-out PSNR {psnr(vae, val):.2f} dB")
    return vae


def standardise(vae, train):
    """Fold a per-channel shift and scale into the VAE so latents * SCALE are ~N(0, 1)."""
    with torch.no_grad():
        means = torch.cat([vae.encode(train[i:i + 64])[0] for i in range(0, 1024, 64)])
        mu = means.mean(dim=(0, 2, 3))
        sd = means.std(dim=(0, 2, 3))
        k = (1 / SCALE) / sd  # per channel
        q = vae.quant_conv
        z = mu.numel()
        q.weight[:z] *= k[:, None, None, None]
        q.bias[:z] = (q.bias[:z] - mu) * k
        q.bias[z:] += 2 * torch.log(k)
        p = vae.post_quant_conv
        # post_quant_conv(z' / k + mu): scale the input columns, fold mu into the bias.
        p.bias += (p.weight[:, :, 0, 0] @ mu)
        p.weight *= (1 / k)[None, :, None, None]
    log(f"latent shift {mu.tolist()} scale {k.tolist()}")


def orange_share(vae):
    """Fraction of an orange (255, 140, 0) square's pixels (on blue) that the VAE gives back
    orange, by world.ts's isOrange box."""
    img = np.zeros((1, 64, 64, 3), np.uint8)
    img[:] = (30, 70, 220)
    img[:, 20:44, 20:44] = (255, 140, 0)
    with torch.no_grad():
        y = vae.decode(vae.encode(to_float(img))[0]).clamp(-1, 1)
    p = torch.round((y[0] + 1) * 127.5).permute(1, 2, 0).numpy()
    r, g, b = p[..., 0], p[..., 1], p[..., 2]
    orange = (r >= 190) & (g >= 90) & (g <= 190) & (b <= 90)
    return float(orange[20:44, 20:44].mean())


def tune_colours(vae, train, colours, val, minutes, seed, lr=1e-3, anchor=10.0):
    """Encoder and decoder on half palette, half random-colour batches. The palette images'
    latent means (times SCALE, unit variance) are pulled towards the starting VAE's with weight
    `anchor`, so the latent space the U-Net learnt stays put while other colours get room."""
    torch.manual_seed(seed)
    old = copy.deepcopy(vae).eval()
    for p in old.parameters():
        p.requires_grad_(False)
    log(f"colours: start PSNR {psnr(vae, val):.2f} dB, orange kept {orange_share(vae):.2f}")
    vae.train()
    opt = torch.optim.Adam(vae.parameters(), lr=lr)
    end = time.time() + minutes * 60
    step = 0
    g = torch.Generator().manual_seed(seed)
    while time.time() < end:
        frac = 1 - (end - time.time()) / (minutes * 60)
        p = train[torch.randint(0, len(train), (8,), generator=g)]
        c = colours[torch.randint(0, len(colours), (8,), generator=g)]
        x = augment(torch.cat([p, c]), frac < 0.6, g)
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * torch.randn_like(mean)
        y = vae.decode(z)
        with torch.no_grad():
            target = old.encode(x[:8])[0]
        drift = F.mse_loss(mean[:8] * SCALE, target * SCALE)
        loss = F.l1_loss(y, x) + F.mse_loss(y, x) + anchor * drift
        optimizer_step(opt, loss,
                       lr * min(1, (step + 1) / 30) * (0.5 + 0.5 * math.cos(math.pi * frac)))
        step += 1
        if step % 50 == 0:
            log(f"colours step {step} loss {loss.item():.4f} drift {drift.item() ** 0.5:.4f}")
    vae.eval()
    with torch.no_grad():
        d = torch.cat([vae.encode(val[i:i + 64])[0] - old.encode(val[i:i + 64])[0]
                       for i in range(0, len(val), 64)]) * SCALE
    log(f"colours: {step} steps, held-out PSNR {psnr(vae, val):.2f} dB, orange kept "
        f"{orange_share(vae):.2f}, held-out latent drift (rms, unit-variance latents) "
        f"{d.pow(2).mean().sqrt().item():.4f}")
    return vae


def ddpm_alphas_cumprod():
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def train_unet(latents, cap_ids, emb, minutes, seed, init=None, lr_max=1e-3, high_t=False,
               snapshot=None, snapshot_minutes=0):
    torch.manual_seed(seed)
    unet = UNet2DConditionModel()
    if init is not None:
        w, _ = st_io.read(init)
        unet.load_state_dict({k[5:]: torch.from_numpy(v.copy()) for k, v in w.items()})
    ema = UNet2DConditionModel()
    ema.load_state_dict(unet.state_dict())
    # Cross-attention learns slowest (the caption matters mostly at high noise, where the
    # epsilon loss hardly depends on it), so it gets three times the learning rate.
    cross = [p for n, p in unet.named_parameters() if ".attn2." in n]
    rest = [p for n, p in unet.named_parameters() if ".attn2." not in n]
    opt = torch.optim.AdamW([{"params": rest, "mult": 1.0}, {"params": cross, "mult": 3.0}],
                            lr=lr_max, weight_decay=0.0)
    ac = ddpm_alphas_cumprod()
    snr = ac / (1 - ac)
    g = torch.Generator().manual_seed(seed)
    end = time.time() + minutes * 60
    step, n, bs = 0, len(latents), 64
    avg = None
    next_snapshot = time.time() + snapshot_minutes * 60
    while time.time() < end:
        frac = 1 - (end - time.time()) / (minutes * 60)
        if snapshot and snapshot_minutes > 0 and time.time() > next_snapshot:
            # The EMA so far, to measure while training goes on.
            st_io.write(snapshot, {"unet." + k: v.numpy() for k, v in ema.state_dict().items()})
            log(f"unet step {step}: snapshot {snapshot}")
            next_snapshot += snapshot_minutes * 60
        idx = torch.randint(0, n, (bs,), generator=g)
        x0 = latents[idx]
        ids = cap_ids[idx].clone()
        ids[torch.rand(bs, generator=g) < 0.1] = 0  # the empty caption
        ctx = emb[ids]
        if high_t:
            # More of the steps where the layout and colours are decided.
            t = (1000 * torch.rand(bs, generator=g).sqrt()).long().clamp(0, 999)
        else:
            t = torch.randint(0, 1000, (bs,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        a = ac[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # Min-SNR-5 weighting: easy low-noise steps count less.
        weight = (snr[t].clamp(max=5.0) / snr[t])[:, None, None, None]
        loss = (weight * (unet(xt, t, ctx) - noise) ** 2).mean()
        lr = lr_max * min(1, (step + 1) / 30) * (0.5 + 0.5 * math.cos(math.pi * min(frac, 1)))
        for group in opt.param_groups:
            group["lr"] = lr * group["mult"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(0.995, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.mul_(decay).add_(p, alpha=1 - decay)
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        step += 1
        if step % 20 == 0:
            log(f"unet step {step} loss {avg:.4f} lr {lr:.2e}")
    log(f"unet: {step} steps, final smoothed loss {avg:.4f}")
    return ema


def load_vae(path):
    vae = AutoencoderKL()
    w, _ = st_io.read(path)
    vae.load_state_dict({k[4:]: torch.from_numpy(v.copy()) for k, v in w.items()})
    vae.eval()
    return vae


def save_vae(vae, path):
    st_io.write(path, {"vae." + k: v.numpy() for k, v in vae.state_dict().items()})


def encode_all(vae, images):
    with torch.no_grad():
        parts = [vae.encode(images[i:i + 64]) for i in range(0, len(images), 64)]
    return torch.cat([m for m, _ in parts]), torch.cat([lv for _, lv in parts])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--stage", required=True, choices=["vae", "colours", "unet", "join"])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--resume", default=None,
                    help="unet: continue from this U-Net file in <work>")
    ap.add_argument("--high-t", action="store_true", help="unet: sample high timesteps more")
    ap.add_argument("--out", default="unet.safetensors", help="unet: output file in <work>")
    ap.add_argument("--lr", type=float, default=None,
                    help="unet: peak learning rate (default 1e-3, or 5e-4 with --resume); "
                    "colours: the same (default 1e-3)")
    ap.add_argument("--snapshot-minutes", type=float, default=0,
                    help="unet: write the EMA to <out>.snap.safetensors this often")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    path = lambda name: os.path.join(a.work, name)  # noqa: E731
    if a.stage == "join":
        unet, _ = st_io.read(path("unet.safetensors"))
        val = to_float(st_io.read(path("world.safetensors"))[0]["val_images"])
        vae, _ = st_io.read(path("vae.safetensors"))
        vae_psnr = psnr(load_vae(path("vae.safetensors")), val)
        log(f"VAE held-out PSNR {vae_psnr:.2f} dB")
        meta = {
            "lorakit.demo.training": f"PyTorch {torch.__version__} on CPU; see scripts/demo_base",
            "lorakit.demo.vae_psnr": f"{vae_psnr:.2f}",
        }
        st_io.write(path("weights.safetensors"), {**unet, **vae}, meta)
        log("joined")
        return
    world, _ = st_io.read(path("world.safetensors"))
    train = to_float(world["train_images"])
    val = to_float(world["val_images"])
    if a.stage == "vae":
        vae = train_vae(train, val, a.minutes, seed=1)
        standardise(vae, train)
        log(f"held-out PSNR after standardising: {psnr(vae, val):.2f} dB")
        save_vae(vae, path("vae.safetensors"))
    elif a.stage == "colours":
        colours = to_float(world["colour_images"])
        vae = tune_colours(load_vae(path("vae.safetensors")), train, colours, val, a.minutes,
                           seed=5, lr=a.lr if a.lr is not None else 1e-3)
        save_vae(vae, path("vae.safetensors"))
    else:
        vae = load_vae(path("vae.safetensors"))
        latents = encode_all(vae, train)[0] * SCALE
        log(f"latents: std {latents.std().item():.3f} mean {latents.mean().item():.3f}")
        cap_ids = torch.from_numpy(world["train_caption_ids"].astype(np.int64))
        emb = torch.from_numpy(world["embeddings"].copy())
        init = path(a.resume) if a.resume else None
        lr = a.lr if a.lr is not None else 5e-4 if a.resume else 1e-3
        snap = path(a.out.replace(".safetensors", ".snap.safetensors"))
        unet = train_unet(latents, cap_ids, emb, a.minutes, seed=4 if a.resume else 2, init=init,
                          lr_max=lr, high_t=a.high_t, snapshot=snap,
                          snapshot_minutes=a.snapshot_minutes)
        st_io.write(path(a.out),
                    {"unet." + k: v.numpy() for k, v in unet.state_dict().items()})
    log(f"stage {a.stage} done in {(time.time() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
