"""Peer for bench/train_step.ts: one LoRA training step on sd_torch.py's U-Net in PyTorch.

Reads {"cases": [{"name", "model": "tiny" | "sd15" | "sdxltiny" | "sdxl", "latent", "dtype":
"f32" | "f16", "gc", "iters"}], "dim", "alpha", "up_init"[, "weights": {model: {"path", "index":
[[name, shape, offset], ...]}}][, "check": {"model", "timestep", "sample", "context", "y", "ours"}]}
as JSON on stdin; prints one JSON line {"torch", "threads", "device", "lora": {model: {"modules",
"params"}}, "<name>": {"seconds"[, "peak_bytes"]} | {"skipped": why}[, "check": {"max_rel_diff",
"max_abs_diff"}]}.

"weights" are lorakit's random U-Net weights (raw little-endian f32 at byte offsets of one file,
by lorakit's internal names), loaded into sd_torch.py's U-Net with `load_internal`; models without
them keep PyTorch's default init (the work is the same). "check" runs one f32 forward of that
model on the given inputs (flat lists; `sample` [1, 4, n, n], `context` [1, 77, ctx], `y` [1, adm]
for SDXL) and compares it with lorakit's output `ours`: max |peer - ours| / max |peer|.

SDXL models (sdxltiny, sdxl) take the vector `y` [1, adm] (kohya's pooled text embedding and size
embeddings) besides the context; their LoRA wraps the same transformer layers (linear proj_in/out).

The U-Net's weights are frozen (requires_grad False). LoRA modules as kohya's LierLa adds them:
every Linear and 1x1 Conv2d inside the transformer blocks (Transformer2D) gets down (kaiming
uniform, a=sqrt(5)) and up (uniform(-up_init, up_init) rather than zeros, so that down gets a
gradient too), scale alpha / dim. One step: forward on latents [1, 4, n, n] at timestep 500 with a
text context [1, 77, ctx], MSE loss against a random target, backward, clip_grad_norm_(1.0),
AdamW (lr 1e-4, weight decay 0.01), zero_grad. Seconds are the median after one warm-up step;
on the CPU each case is timed with 1 thread and with all cores, and the faster is kept (the case
reports "threads" and "seconds_by_threads"; the top-level "threads" is all cores).

f16 is kohya's --mixed_precision fp16: the frozen U-Net in f16, LoRA in f32, autocast to f16 and
a GradScaler; the loss in f32 as kohya computes it. PyTorch 1.13 has no f16 matmul or conv2d on
the CPU: there the f16 cases are tried once and report the error. "gc" checkpoints every ResNet and
transformer block (non-reentrant, so LoRA weights inside still get gradients), as diffusers'
gradient checkpointing does. On cuda each case also reports torch.cuda.max_memory_allocated
(weights, LoRA, optimizer state and activations).
"""
import contextlib
import json
import math
import os

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from peer_common import DEVICE, median_time, read_spec, sync
from sd_torch import ResAttn, Transformer2D, UNet, load_internal

MODELS = {
    "tiny": dict(ch=(32, 64, 64, 64), heads=2, ctx=32),
    "sd15": dict(ch=(320, 640, 1280, 1280), heads=8, ctx=768),
    # sdxl-tiny (../shared/fixtures/sdxl-tiny) and the SDXL base U-Net.
    "sdxltiny": dict(ch=(32, 32, 64), attn=(False, True, True), head_dim=16, ctx=16,
                     depth=(1, 1, 2), linear=True, adm=56),
    "sdxl": dict(ch=(320, 640, 1280), attn=(False, True, True), head_dim=64, ctx=2048,
                 depth=(0, 2, 10), linear=True, adm=2816),
}
DTYPES = {"f32": torch.float32, "f16": torch.float16}
TIMESTEP = 500
MAX_NORM = 1.0
LR = 1e-4


class LoRA(nn.Module):
    """A frozen Linear or 1x1 Conv2d plus up(down(x)) * alpha / dim, as kohya's LoRAModule."""

    def __init__(self, org, dim, alpha, up_init):
        super().__init__()
        if isinstance(org, nn.Conv2d):
            self.down = nn.Conv2d(org.in_channels, dim, 1, bias=False)
            self.up = nn.Conv2d(dim, org.out_channels, 1, bias=False)
        else:
            self.down = nn.Linear(org.in_features, dim, bias=False)
            self.up = nn.Linear(dim, org.out_features, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.uniform_(self.up.weight, -up_init, up_init)
        self.scale = alpha / dim
        self.org = org

    def forward(self, x):
        return self.org(x) + self.up(self.down(x)) * self.scale


def lora_target(m):
    return isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1))


def add_lora(unet, dim, alpha, up_init):
    """Wrap every LierLa target inside the transformer blocks; returns the LoRA parameters."""
    count = 0
    for block in [m for m in unet.modules() if isinstance(m, Transformer2D)]:
        for parent in list(block.modules()):
            for name, child in list(parent.named_children()):
                if lora_target(child):
                    setattr(parent, name, LoRA(child, dim, alpha, up_init))
                    count += 1
    params = [p for m in unet.modules() if isinstance(m, LoRA)
              for p in (m.down.weight, m.up.weight)]
    return count, params


class Checkpointed(nn.Module):
    """Recompute a block's forward during backward (torch.utils.checkpoint, non-reentrant)."""

    def __init__(self, block):
        super().__init__()
        self.block = block

    def forward(self, *args):
        return checkpoint(self.block, *args, use_reentrant=False)


def set_checkpointing(unet, on):
    """Wrap (or unwrap) every ResNet and transformer block of the U-Net."""
    def swap(m):
        if on:
            return m if isinstance(m, Checkpointed) else Checkpointed(m)
        return m.block if isinstance(m, Checkpointed) else m

    for m in list(unet.down) + list(unet.up):
        if isinstance(m, ResAttn):
            m.resnet = swap(m.resnet)
            if m.attn is not None:
                m.attn = swap(m.attn)
    for i in range(len(unet.mid)):
        unet.mid[i] = swap(unet.mid[i])


def run_case(unet, params, case, cfg):
    dtype = DTYPES[case["dtype"]]
    f16 = case["dtype"] == "f16"
    n = case["latent"]
    latents = torch.randn(1, 4, n, n, dtype=dtype)
    target = torch.randn(1, 4, n, n, dtype=dtype)
    ctx = torch.randn(1, 77, cfg["ctx"], dtype=dtype)
    y = torch.randn(1, cfg["adm"], dtype=dtype) if cfg.get("adm") else None
    t = torch.tensor([TIMESTEP])
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.01)
    scaler = torch.cuda.amp.GradScaler() if f16 and DEVICE.startswith("cuda") else None
    # PyTorch 1.13's CPU autocast takes bf16 only: on the CPU f16 runs the f16 model as is.
    def autocast():
        if f16 and DEVICE.startswith("cuda"):
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def step():
        with autocast():
            pred = unet(latents, t, ctx, y)
        loss = F.mse_loss(pred.float(), target.float())
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, MAX_NORM)
            opt.step()
        opt.zero_grad(set_to_none=True)

    set_checkpointing(unet, case["gc"])
    out = {}
    try:
        if f16 and DEVICE == "cpu":
            try:
                step()
            except RuntimeError as e:
                return {"skipped": f"torch {torch.__version__} cpu f16: {str(e).splitlines()[0]}"}
        if DEVICE.startswith("cuda"):
            sync()
            torch.cuda.reset_peak_memory_stats()
        if DEVICE == "cpu":
            # Small steps run far slower with 2+ threads on a busy 2-core machine (OpenMP
            # synchronisation): time 1 thread and all cores, and keep the faster.
            by = {}
            for k in sorted({1, os.cpu_count() or 1}):
                torch.set_num_threads(k)
                by[k] = median_time(step, case.get("iters", 1))
            out["threads"] = min(by, key=by.get)
            out["seconds"] = by[out["threads"]]
            out["seconds_by_threads"] = by
        else:
            out["seconds"] = median_time(step, case.get("iters", 1))
        if DEVICE.startswith("cuda"):
            out["peak_bytes"] = torch.cuda.max_memory_allocated()
    finally:
        set_checkpointing(unet, False)
        del opt
    return out


def read_weights(w):
    """lorakit's weights {internal name: f32 tensor} from the bench's raw file and index."""
    raw = open(w["path"], "rb").read()
    out = {}
    for name, shape, offset in w["index"]:
        n = math.prod(shape)
        out[name] = torch.frombuffer(bytearray(raw[offset:offset + 4 * n]),
                                     dtype=torch.float32).reshape(shape)
    return out


def build(kind, weights):
    """The model's U-Net in f32, frozen, with lorakit's weights when the bench passed them."""
    unet = UNet(**MODELS[kind])
    if weights is not None:
        load_internal(unet, weights)
    unet.requires_grad_(False)
    return unet


def check_forward(check, weights):
    """One f32 forward on the bench's inputs against lorakit's output."""
    cfg = MODELS[check["model"]]
    unet = build(check["model"], weights).eval()
    ours = torch.tensor(check["ours"], dtype=torch.float32)
    n = int(round(math.sqrt(len(check["sample"]) / 4)))
    sample = torch.tensor(check["sample"], dtype=torch.float32).reshape(1, 4, n, n)
    ctx = torch.tensor(check["context"], dtype=torch.float32).reshape(1, -1, cfg["ctx"])
    y = torch.tensor(check["y"], dtype=torch.float32).reshape(1, -1) if cfg.get("adm") else None
    with torch.no_grad():
        ref = unet(sample, torch.tensor([check["timestep"]]), ctx, y).flatten()
    diff = (ref - ours).abs().max().item()
    return {"max_abs_diff": diff, "max_rel_diff": diff / ref.abs().max().item()}


def main():
    spec = read_spec()
    dim, alpha, up_init = spec["dim"], spec["alpha"], spec["up_init"]
    out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "device": DEVICE,
           "lora": {}}
    weights = {k: read_weights(w) for k, w in spec.get("weights", {}).items()}
    if "check" in spec:
        out["check"] = check_forward(spec["check"], weights.get(spec["check"]["model"]))
    # One model per dtype: the f16 U-Net is converted before the (f32) LoRA modules are added.
    for kind, cfg in MODELS.items():
        for name in ("f32", "f16"):
            todo = [c for c in spec["cases"] if c["model"] == kind and c["dtype"] == name]
            if not todo:
                continue
            unet = build(kind, weights.get(kind))
            unet.to(DTYPES[name])
            count, params = add_lora(unet, dim, alpha, up_init)
            out["lora"][kind] = {"modules": count, "params": sum(p.numel() for p in params)}
            unet.train()
            for c in todo:
                out[c["name"]] = run_case(unet, params, c, cfg)
            del unet, params
            if DEVICE.startswith("cuda"):
                torch.cuda.empty_cache()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
