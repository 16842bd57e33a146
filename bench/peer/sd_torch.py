"""SD 1.x's and SDXL's U-Net and SD's VAE decoder in plain PyTorch, for the bench peers (no
diffusers needed).

The layers and shapes are diffusers' UNet2DConditionModel (SD1: conv proj_in/proj_out, 8 heads,
context 768; SDXL: levels without attention, per-level transformer depth, linear proj_in/proj_out,
heads of a fixed width, and `label_emb`/`add_embedding` of the vector `y` added to the time
embedding) and AutoencoderKL decoder, so the work (FLOPs) matches lorakit's core/models; module
names differ and the weights are PyTorch's default random init unless `load_internal` copies
lorakit's (by lorakit's internal, diffusers-style names). Inference only: no dropout.
Attention uses F.scaled_dot_product_attention where PyTorch has it (2.x), else the explicit
softmax(q k^T / sqrt(d)) v that diffusers runs on PyTorch 1.x.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

SDPA = getattr(F, "scaled_dot_product_attention", None)


def attention(q, k, v, heads):
    """Multi-head attention over [B, T, C] projections."""
    b, t, c = q.shape
    d = c // heads
    q, k, v = (x.reshape(b, -1, heads, d).transpose(1, 2) for x in (q, k, v))
    if SDPA is not None:
        o = SDPA(q, k, v)
    else:
        o = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * d ** -0.5, dim=-1) @ v
    return o.transpose(1, 2).reshape(b, t, c)


class Resnet(nn.Module):
    """ResnetBlock2D: GN+SiLU -> conv1 (+ projected time embedding) -> GN+SiLU -> conv2, + skip."""

    def __init__(self, cin, cout, temb, eps):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout) if temb else None
        self.norm2 = nn.GroupNorm(32, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, temb_act=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(temb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Attention(nn.Module):
    """diffusers' Attention: q from x, k and v from the context (x itself for self-attention)."""

    def __init__(self, c, ctx, heads, qkv_bias=False):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(c, c, bias=qkv_bias)
        self.to_k = nn.Linear(ctx, c, bias=qkv_bias)
        self.to_v = nn.Linear(ctx, c, bias=qkv_bias)
        self.to_out = nn.Linear(c, c)

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out(attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class TransformerBlock(nn.Module):
    """BasicTransformerBlock: self-attention, cross-attention, GEGLU feed-forward (pre-LN)."""

    def __init__(self, c, ctx, heads):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(c) for _ in range(3))
        self.attn1 = Attention(c, c, heads)
        self.attn2 = Attention(c, ctx, heads)
        self.ff_proj = nn.Linear(c, 8 * c)  # GEGLU: value and gate, 4c each
        self.ff_out = nn.Linear(4 * c, c)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        value, gate = self.ff_proj(self.norm3(x)).chunk(2, dim=-1)
        return x + self.ff_out(value * F.gelu(gate))


class Transformer2D(nn.Module):
    """Transformer2DModel: GN -> proj_in -> tokens -> `depth` blocks -> proj_out, + x. proj_in/out
    are 1x1 convs (SD1) or, with `linear`, Linear layers on the tokens (SD2, SDXL)."""

    def __init__(self, c, ctx, heads, depth=1, linear=False):
        super().__init__()
        self.linear = linear
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.proj_in = nn.Linear(c, c) if linear else nn.Conv2d(c, c, 1)
        self.blocks = nn.ModuleList([TransformerBlock(c, ctx, heads) for _ in range(depth)])
        self.proj_out = nn.Linear(c, c) if linear else nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.norm(x)
        if not self.linear:
            t = self.proj_in(t)
        t = t.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.linear:
            t = self.proj_in(t)
        for block in self.blocks:
            t = block(t, ctx)
        if self.linear:
            t = self.proj_out(t)
        t = t.reshape(b, h, w, c).permute(0, 3, 1, 2)
        return (t if self.linear else self.proj_out(t)) + x


class ResAttn(nn.Module):
    """One layer of a down/up block: a ResNet, then a transformer in CrossAttn blocks."""

    def __init__(self, cin, cout, temb, ctx, heads, depth=1, linear=False):
        super().__init__()
        self.resnet = Resnet(cin, cout, temb, 1e-5)
        self.attn = Transformer2D(cout, ctx, heads, depth, linear) if heads else None

    def forward(self, x, temb_act, ctx):
        x = self.resnet(x, temb_act)
        return x if self.attn is None else self.attn(x, ctx)


class Upsample(nn.Module):
    """Upsample2D: nearest 2x, then a 3x3 conv."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, *_):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    """UNet2DConditionModel; SD 1.x's configuration by default (859,520,964 parameters).

    `heads`: one count for every level (SD1) or one per level; `head_dim` instead fixes the head
    width (SDXL: 64). `depth`: transformer blocks per level (SDXL [0, 2, 10]; the mid block uses
    the last level's); `linear`: Linear proj_in/proj_out; `adm`: width of SDXL's vector `y`
    (`label_emb`: Linear, SiLU, Linear, added to the time embedding before its SiLU)."""

    def __init__(self, ch=(320, 640, 1280, 1280), attn=(True, True, True, False), heads=8,
                 ctx=768, layers=2, head_dim=None, depth=None, linear=False, adm=None):
        super().__init__()
        temb = 4 * ch[0]
        n = len(ch)
        if head_dim is not None:
            heads = [c // head_dim for c in ch]
        elif isinstance(heads, int):
            heads = [heads] * n
        depth = list(depth) if depth is not None else [1] * n
        self.conv_in = nn.Conv2d(4, ch[0], 3, padding=1)
        self.time_linear_1 = nn.Linear(ch[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)
        self.add_linear_1 = nn.Linear(adm, temb) if adm else None
        self.add_linear_2 = nn.Linear(temb, temb) if adm else None
        self.down = nn.ModuleList()
        skips, cin = [ch[0]], ch[0]
        for i, c in enumerate(ch):
            for _ in range(layers):
                self.down.append(ResAttn(cin, c, temb, ctx, heads[i] if attn[i] else 0, depth[i],
                                         linear))
                cin = c
                skips.append(c)
            if i < n - 1:  # Downsample2D: 3x3 conv, stride 2
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([Resnet(cin, cin, temb, 1e-5),
                                  Transformer2D(cin, ctx, heads[-1], depth[-1], linear),
                                  Resnet(cin, cin, temb, 1e-5)])
        self.up = nn.ModuleList()
        for i, (c, a) in enumerate(zip(reversed(ch), reversed(attn))):
            lvl = n - 1 - i
            for _ in range(layers + 1):
                self.up.append(ResAttn(cin + skips.pop(), c, temb, ctx, heads[lvl] if a else 0,
                                       depth[lvl], linear))
                cin = c
            if i < n - 1:
                self.up.append(Upsample(c))
        self.norm_out = nn.GroupNorm(32, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], 4, 3, padding=1)

    def time_embedding(self, t, dtype, y=None):
        """Sinusoidal embedding (flip_sin_to_cos, shift 0) -> linear -> SiLU -> linear, plus
        label_emb(y) when the U-Net has one, -> SiLU."""
        half = self.time_linear_1.in_features // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        arg = t.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).to(dtype)
        emb = self.time_linear_2(F.silu(self.time_linear_1(emb)))
        if self.add_linear_1 is not None and y is not None:
            emb = emb + self.add_linear_2(F.silu(self.add_linear_1(y.to(dtype))))
        return F.silu(emb)

    def forward(self, sample, t, ctx, y=None):
        temb_act = self.time_embedding(t, sample.dtype, y)
        x = self.conv_in(sample)
        skips = [x]
        for m in self.down:
            x = m(x) if isinstance(m, nn.Conv2d) else m(x, temb_act, ctx)
            skips.append(x)
        x = self.mid[0](x, temb_act)
        x = self.mid[2](self.mid[1](x, ctx), temb_act)
        for m in self.up:
            if isinstance(m, ResAttn):
                x = torch.cat([x, skips.pop()], dim=1)
            x = m(x, temb_act, ctx)
        return self.conv_out(F.silu(self.norm_out(x)))


def _transformer_names(prefix, t):
    out = {f"{prefix}.norm": t.norm, f"{prefix}.proj_in": t.proj_in,
           f"{prefix}.proj_out": t.proj_out}
    for d, b in enumerate(t.blocks):
        p = f"{prefix}.transformer_blocks.{d}"
        for k in ("norm1", "norm2", "norm3"):
            out[f"{p}.{k}"] = getattr(b, k)
        for a in ("attn1", "attn2"):
            at = getattr(b, a)
            for k in ("to_q", "to_k", "to_v"):
                out[f"{p}.{a}.{k}"] = getattr(at, k)
            out[f"{p}.{a}.to_out.0"] = at.to_out
        out[f"{p}.ff.net.0.proj"] = b.ff_proj
        out[f"{p}.ff.net.2"] = b.ff_out
    return out


def internal_modules(unet):
    """lorakit's internal (diffusers) module names of `unet` (before checkpointing or LoRA wraps
    its layers): {"unet.down_blocks.0.resnets.0.conv1": module, ...}."""
    out = {"unet.conv_in": unet.conv_in, "unet.time_embedding.linear_1": unet.time_linear_1,
           "unet.time_embedding.linear_2": unet.time_linear_2,
           "unet.conv_norm_out": unet.norm_out, "unet.conv_out": unet.conv_out}
    if unet.add_linear_1 is not None:
        out["unet.add_embedding.linear_1"] = unet.add_linear_1
        out["unet.add_embedding.linear_2"] = unet.add_linear_2

    def resnet(prefix, r):
        for k in ("norm1", "conv1", "time_emb_proj", "norm2", "conv2", "conv_shortcut"):
            if getattr(r, k) is not None:
                out[f"{prefix}.{k}"] = getattr(r, k)

    def blocks(kind, mods, sampler):
        level, j = 0, 0
        for m in mods:
            p = f"unet.{kind}_blocks.{level}"
            if isinstance(m, ResAttn):
                resnet(f"{p}.resnets.{j}", m.resnet)
                if m.attn is not None:
                    out.update(_transformer_names(f"{p}.attentions.{j}", m.attn))
                j += 1
            else:
                out[f"{p}.{sampler}.0.conv"] = m if isinstance(m, nn.Conv2d) else m.conv
            if not isinstance(m, ResAttn):  # a level ends with its sampler (the last has none)
                level, j = level + 1, 0

    blocks("down", unet.down, "downsamplers")
    resnet("unet.mid_block.resnets.0", unet.mid[0])
    out.update(_transformer_names("unet.mid_block.attentions.0", unet.mid[1]))
    resnet("unet.mid_block.resnets.1", unet.mid[2])
    blocks("up", unet.up, "upsamplers")
    return out


def load_internal(unet, tensors):
    """Copy lorakit's weights {internal name: tensor} into `unet`; every parameter must be
    named exactly once (raises otherwise)."""
    seen = set()
    with torch.no_grad():
        for prefix, m in internal_modules(unet).items():
            for k, p in m.named_parameters(recurse=False):
                name = f"{prefix}.{k}"
                src = tensors[name]
                if tuple(src.shape) != tuple(p.shape):
                    raise ValueError(f"{name}: {tuple(src.shape)} != {tuple(p.shape)}")
                p.copy_(src.to(p.dtype))
                seen.add(name)
    extra = set(tensors) - seen
    if extra:
        raise ValueError(f"{len(extra)} tensors not in the peer's U-Net, e.g. {sorted(extra)[0]}")
    total = sum(1 for _ in unet.parameters())
    if total != len(seen):
        raise ValueError(f"{total - len(seen)} peer parameters not loaded")


class VaeAttention(nn.Module):
    """The VAE mid block's attention: GroupNorm, one head as wide as the channels, residual."""

    def __init__(self, c):
        super().__init__()
        self.group_norm = nn.GroupNorm(32, c, eps=1e-6)
        self.attn = Attention(c, c, 1, qkv_bias=True)

    def forward(self, x, *_):
        b, c, h, w = x.shape
        t = self.group_norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        return self.attn(t).reshape(b, h, w, c).permute(0, 3, 1, 2) + x


class VaeDecoder(nn.Module):
    """AutoencoderKL's post_quant_conv and decoder (SD: 49,490,199 parameters by default)."""

    def __init__(self, ch=(128, 256, 512, 512), layers=2, z=4):
        super().__init__()
        eps = 1e-6
        self.post_quant_conv = nn.Conv2d(z, z, 1)
        self.conv_in = nn.Conv2d(z, ch[-1], 3, padding=1)
        cin = ch[-1]
        blocks = [Resnet(cin, cin, 0, eps), VaeAttention(cin), Resnet(cin, cin, 0, eps)]
        for i, c in enumerate(reversed(ch)):
            for _ in range(layers + 1):
                blocks.append(Resnet(cin, c, 0, eps))
                cin = c
            if i < len(ch) - 1:
                blocks.append(Upsample(c))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.GroupNorm(32, ch[0], eps=eps)
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, latents):
        x = self.blocks(self.conv_in(self.post_quant_conv(latents)))
        return self.conv_out(F.silu(self.norm_out(x)))


def param_count(model):
    return sum(p.numel() for p in model.parameters())
