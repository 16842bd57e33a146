"""SD 1.x's U-Net and VAE decoder in plain PyTorch, for the bench peers (no diffusers needed).

The layers and shapes are diffusers' UNet2DConditionModel (SD1: conv proj_in/proj_out, 8 heads,
context 768) and AutoencoderKL decoder, so the work (FLOPs) matches lorakit's core/models; module
names differ and the weights are PyTorch's default random init. Inference only: no dropout.
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
    """Transformer2DModel (SD1): GN -> 1x1 conv proj_in -> tokens -> block -> proj_out, + x."""

    def __init__(self, c, ctx, heads):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.block = TransformerBlock(c, ctx, heads)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        t = self.block(t, ctx).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return self.proj_out(t) + x


class ResAttn(nn.Module):
    """One layer of a down/up block: a ResNet, then a transformer in CrossAttn blocks."""

    def __init__(self, cin, cout, temb, ctx, heads):
        super().__init__()
        self.resnet = Resnet(cin, cout, temb, 1e-5)
        self.attn = Transformer2D(cout, ctx, heads) if heads else None

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
    """UNet2DConditionModel with SD 1.x's configuration (859,520,964 parameters by default)."""

    def __init__(self, ch=(320, 640, 1280, 1280), attn=(True, True, True, False), heads=8,
                 ctx=768, layers=2):
        super().__init__()
        temb = 4 * ch[0]
        self.conv_in = nn.Conv2d(4, ch[0], 3, padding=1)
        self.time_linear_1 = nn.Linear(ch[0], temb)
        self.time_linear_2 = nn.Linear(temb, temb)
        self.down = nn.ModuleList()
        skips, cin = [ch[0]], ch[0]
        for i, c in enumerate(ch):
            for _ in range(layers):
                self.down.append(ResAttn(cin, c, temb, ctx, heads if attn[i] else 0))
                cin = c
                skips.append(c)
            if i < len(ch) - 1:  # Downsample2D: 3x3 conv, stride 2
                self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid = nn.ModuleList([Resnet(cin, cin, temb, 1e-5), Transformer2D(cin, ctx, heads),
                                  Resnet(cin, cin, temb, 1e-5)])
        self.up = nn.ModuleList()
        for i, (c, a) in enumerate(zip(reversed(ch), reversed(attn))):
            for _ in range(layers + 1):
                self.up.append(ResAttn(cin + skips.pop(), c, temb, ctx, heads if a else 0))
                cin = c
            if i < len(ch) - 1:
                self.up.append(Upsample(c))
        self.norm_out = nn.GroupNorm(32, ch[0], eps=1e-5)
        self.conv_out = nn.Conv2d(ch[0], 4, 3, padding=1)

    def time_embedding(self, t, dtype):
        """Sinusoidal embedding (flip_sin_to_cos, shift 0) -> linear -> SiLU -> linear -> SiLU."""
        half = self.time_linear_1.in_features // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        arg = t.float()[:, None] * freqs[None, :]
        emb = torch.cat([torch.cos(arg), torch.sin(arg)], dim=-1).to(dtype)
        return F.silu(self.time_linear_2(F.silu(self.time_linear_1(emb))))

    def forward(self, sample, t, ctx):
        temb_act = self.time_embedding(t, sample.dtype)
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
