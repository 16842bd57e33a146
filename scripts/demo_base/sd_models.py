"""SD 1.x U-Net and VAE (encoder and decoder) in plain PyTorch, trainable, with parameter names
that follow diffusers' UNet2DConditionModel and AutoencoderKL, so `state_dict()` keys prefixed
with "unet." / "vae." are lorakit's internal names (core/models/config_keys.ts) and convert to an
LDM checkpoint with lorakit's own key maps. Only the features SD 1.x uses are implemented:
GroupNorm(32), SiLU, conv projections in the transformers, GEGLU feed-forward, sinusoidal time
embedding with flip_sin_to_cos=True and freq_shift=0.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(c, eps):
    return nn.GroupNorm(32, c, eps=eps, affine=True)


class ResnetBlock2D(nn.Module):
    def __init__(self, cin, cout, temb, eps):
        super().__init__()
        self.norm1 = group_norm(cin, eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb:
            self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = group_norm(cout, eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        return x + h


def attention(q, k, v, heads):
    b, n, c = q.shape
    d = c // heads
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, k.shape[1], heads, d).transpose(1, 2)
    v = v.reshape(b, v.shape[1], heads, d).transpose(1, 2)
    w = torch.softmax((q / math.sqrt(d)) @ k.transpose(-1, -2), dim=-1)
    return (w @ v).transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    def __init__(self, c, ctx, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(c, c, bias=False)
        self.to_k = nn.Linear(ctx, c, bias=False)
        self.to_v = nn.Linear(ctx, c, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x, ctx=None):
        ctx = x if ctx is None else ctx
        return self.to_out[0](attention(self.to_q(x), self.to_k(ctx), self.to_v(ctx), self.heads))


class GEGLU(nn.Module):
    def __init__(self, c, inner):
        super().__init__()
        self.proj = nn.Linear(c, inner * 2)

    def forward(self, x):
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(c, 4 * c), nn.Dropout(0.0), nn.Linear(4 * c, c)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    def __init__(self, c, ctx, heads, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(c, eps=eps)
        self.attn1 = Attention(c, c, heads)
        self.norm2 = nn.LayerNorm(c, eps=eps)
        self.attn2 = Attention(c, ctx, heads)
        self.norm3 = nn.LayerNorm(c, eps=eps)
        self.ff = FeedForward(c)

    def forward(self, x, ctx):
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), ctx)
        return x + self.ff(self.norm3(x))


class Transformer2DModel(nn.Module):
    def __init__(self, c, ctx, heads, cfg):
        super().__init__()
        self.norm = group_norm(c, cfg["transformer_norm_eps"])
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(c, ctx, heads, cfg["layer_norm_eps"])])
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x, ctx):
        b, c, h, w = x.shape
        t = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)
        for blk in self.transformer_blocks:
            t = blk(t, ctx)
        return x + self.proj_out(t.reshape(b, h, w, c).permute(0, 3, 1, 2))


class Downsample2D(nn.Module):
    def __init__(self, c, vae=False):
        super().__init__()
        self.vae = vae
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=0 if vae else 1)

    def forward(self, x):
        if self.vae:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


UNET_TINY = {
    "channels": (32, 64, 64, 64),
    "attn": (True, True, True, False),
    "heads": 2,
    "ctx": 32,
    "layers": 2,
    "temb": 128,
    "norm_eps": 1e-5,
    "transformer_norm_eps": 1e-6,
    "layer_norm_eps": 1e-5,
}


class UNetBlock(nn.Module):
    """A down or up block: resnets, optional attentions, optional resampler."""

    def __init__(self):
        super().__init__()


class UNet2DConditionModel(nn.Module):
    def __init__(self, cfg=UNET_TINY):
        super().__init__()
        ch, attn, L = cfg["channels"], cfg["attn"], cfg["layers"]
        temb, eps, heads, ctx = cfg["temb"], cfg["norm_eps"], cfg["heads"], cfg["ctx"]
        self.ch0 = ch[0]
        self.conv_in = nn.Conv2d(4, ch[0], 3, padding=1)
        self.time_embedding = nn.Module()
        self.time_embedding.linear_1 = nn.Linear(ch[0], temb)
        self.time_embedding.linear_2 = nn.Linear(temb, temb)
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            blk = UNetBlock()
            blk.resnets = nn.ModuleList(
                [ResnetBlock2D(prev if j == 0 else c, c, temb, eps) for j in range(L)])
            if attn[i]:
                blk.attentions = nn.ModuleList(
                    [Transformer2DModel(c, ctx, heads, cfg) for _ in range(L)])
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Downsample2D(c)])
            self.down_blocks.append(blk)
            prev = c
        self.mid_block = UNetBlock()
        self.mid_block.resnets = nn.ModuleList(
            [ResnetBlock2D(ch[-1], ch[-1], temb, eps) for _ in range(2)])
        self.mid_block.attentions = nn.ModuleList([Transformer2DModel(ch[-1], ctx, heads, cfg)])
        self.up_blocks = nn.ModuleList()
        rev = list(reversed(ch))
        rattn = list(reversed(attn))
        prev = ch[-1]
        for i, c in enumerate(rev):
            skip_in = rev[min(i + 1, len(ch) - 1)]
            blk = UNetBlock()
            res = []
            for j in range(L + 1):
                rin = prev if j == 0 else c
                sk = skip_in if j == L else c
                res.append(ResnetBlock2D(rin + sk, c, temb, eps))
            blk.resnets = nn.ModuleList(res)
            if rattn[i]:
                blk.attentions = nn.ModuleList(
                    [Transformer2DModel(c, ctx, heads, cfg) for _ in range(L + 1)])
            if i < len(ch) - 1:
                blk.upsamplers = nn.ModuleList([Upsample2D(c)])
            self.up_blocks.append(blk)
            prev = c
        self.conv_norm_out = group_norm(ch[0], eps)
        self.conv_out = nn.Conv2d(ch[0], 4, 3, padding=1)

    def time_proj(self, t):
        half = self.ch0 // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        args = t.float()[:, None] * freqs[None]
        return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)

    def forward(self, x, t, ctx):
        temb = self.time_embedding.linear_1(self.time_proj(t))
        temb = self.time_embedding.linear_2(F.silu(temb))
        h = self.conv_in(x)
        skips = [h]
        for blk in self.down_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(h, temb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[j](h, ctx)
                skips.append(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
                skips.append(h)
        h = self.mid_block.resnets[0](h, temb)
        h = self.mid_block.attentions[0](h, ctx)
        h = self.mid_block.resnets[1](h, temb)
        for blk in self.up_blocks:
            for j, r in enumerate(blk.resnets):
                h = r(torch.cat([h, skips.pop()], dim=1), temb)
                if hasattr(blk, "attentions"):
                    h = blk.attentions[j](h, ctx)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class VaeAttention(nn.Module):
    """The VAE mid-block's single-head self-attention (diffusers' current names)."""

    def __init__(self, c, eps):
        super().__init__()
        self.group_norm = group_norm(c, eps)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        b, c, h, w = x.shape
        t = self.group_norm(x).reshape(b, c, h * w).transpose(1, 2)
        o = self.to_out[0](attention(self.to_q(t), self.to_k(t), self.to_v(t), 1))
        return x + o.transpose(1, 2).reshape(b, c, h, w)


class VaeMid(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(c, c, 0, eps) for _ in range(2)])
        self.attentions = nn.ModuleList([VaeAttention(c, eps)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Encoder(nn.Module):
    def __init__(self, ch, layers, z, eps):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            blk = UNetBlock()
            blk.resnets = nn.ModuleList(
                [ResnetBlock2D(prev if j == 0 else c, c, 0, eps) for j in range(layers)])
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Downsample2D(c, vae=True)])
            self.down_blocks.append(blk)
            prev = c
        self.mid_block = VaeMid(ch[-1], eps)
        self.conv_norm_out = group_norm(ch[-1], eps)
        self.conv_out = nn.Conv2d(ch[-1], 2 * z, 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for blk in self.down_blocks:
            for r in blk.resnets:
                h = r(h)
            if hasattr(blk, "downsamplers"):
                h = blk.downsamplers[0](h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, layers, z, eps):
        super().__init__()
        rev = list(reversed(ch))
        self.conv_in = nn.Conv2d(z, rev[0], 3, padding=1)
        self.mid_block = VaeMid(rev[0], eps)
        self.up_blocks = nn.ModuleList()
        prev = rev[0]
        for i, c in enumerate(rev):
            blk = UNetBlock()
            blk.resnets = nn.ModuleList(
                [ResnetBlock2D(prev if j == 0 else c, c, 0, eps) for j in range(layers + 1)])
            if i < len(ch) - 1:
                blk.upsamplers = nn.ModuleList([Upsample2D(c)])
            self.up_blocks.append(blk)
            prev = c
        self.conv_norm_out = group_norm(ch[0], eps)
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            for r in blk.resnets:
                h = r(h)
            if hasattr(blk, "upsamplers"):
                h = blk.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch=(32, 64, 64, 64), layers=2, z=4, eps=1e-6):
        super().__init__()
        self.encoder = Encoder(ch, layers, z, eps)
        self.decoder = Decoder(ch, layers, z, eps)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 1)

    def encode(self, x):
        """Mean and log-variance of the latent distribution."""
        m = self.quant_conv(self.encoder(x))
        return m.chunk(2, dim=1)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))
