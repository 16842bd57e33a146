"""Peer for bench/attention.ts: attention with PyTorch on the CPU, the explicit way.

PyTorch 1.13 has no scaled_dot_product_attention, so this is softmax(q @ k^T * scale) @ v, which
materialises the [BH, Tq, Tk] scores (what the fused GPU kernels avoid). Reads
{"cases": [{"name", "bh", "tq", "tk", "d", "causal"}], "softmax": {"rows", "n"}, "iters"} as JSON
on stdin and prints one JSON line {"torch", "threads", "<name>": {"forward": s, "backward": s},
"softmax": s} with median seconds; backward is the gradient of q, k and v for a given dO. Only
f32: PyTorch 1.13 has no f16 matmul on the CPU.
"""
import json

import torch

from peer_common import median_time, read_spec


def attention(q, k, v, scale, causal):
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        mask = torch.ones(s.shape[-2], s.shape[-1], dtype=torch.bool).triu(1)
        s = s.masked_fill(mask, float("-inf"))
    return torch.matmul(torch.softmax(s, dim=-1), v)


def main():
    spec = read_spec()
    iters = spec.get("iters", 1)
    out = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for c in spec["cases"]:
        bh, tq, tk, d, causal = c["bh"], c["tq"], c["tk"], c["d"], c.get("causal", False)
        scale = d ** -0.5
        q = torch.randn(bh, tq, d, requires_grad=True)
        k = torch.randn(bh, tk, d, requires_grad=True)
        v = torch.randn(bh, tk, d, requires_grad=True)
        g = torch.randn(bh, tq, d)

        def fwd():
            with torch.no_grad():
                attention(q, k, v, scale, causal)

        y = None

        def forward_kept():
            nonlocal y
            y = attention(q, k, v, scale, causal)

        def bwd():
            torch.autograd.grad(y, (q, k, v), g, retain_graph=True)

        f = median_time(fwd, iters)
        forward_kept()
        b = median_time(bwd, iters)
        y = None
        out[c["name"]] = {"forward": f, "backward": b}
    sm = spec.get("softmax")
    if sm:
        x = torch.randn(sm["rows"], sm["n"])
        out["softmax"] = median_time(lambda: torch.softmax(x, dim=-1), max(iters, 5))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
