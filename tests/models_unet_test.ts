/**
 * The U-Net against diffusers 0.21 on the tiny fixtures (square and non-square latents, f32 and
 * f16, SD1's conv projections and SD2's linear ones), latents that are not a multiple of 8,
 * gradients through the whole network, and errors for bad inputs.
 */
import assert from "node:assert/strict";
import { backward, initGpu, mean, resizeNearest, rt, scope, square, Tensor } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusion, UNet2DConditionModel, uploadWeights } from "../core/models/mod.ts";
import { fixture } from "./fixtures.ts";
import { assertClose, randn } from "./op_check.ts";

interface UNetCase {
  sample: { shape: number[]; data: Float32Array };
  timesteps: number[];
  context: { shape: number[]; data: Float32Array };
  out: Float32Array;
}

async function cases(variant: string): Promise<Record<string, UNetCase> | null> {
  const path = fixture(`${variant}/forward.safetensors`);
  if (path === null) return null;
  const f = await openSafetensors(path);
  try {
    const out: Record<string, UNetCase> = {};
    for (const sfx of ["", "_rect"]) {
      out[sfx || "square"] = {
        sample: await f.readF32(`unet_sample${sfx}`),
        timesteps: Array.from((await f.readF32(`unet_timesteps${sfx}`)).data),
        context: await f.readF32(`unet_context${sfx}`),
        out: (await f.readF32(`unet_out${sfx}`)).data,
      };
    }
    return out;
  } finally {
    f.close();
  }
}

async function run(unet: UNet2DConditionModel, c: UNetCase): Promise<Float32Array> {
  const y = scope(() =>
    unet.forward(
      Tensor.fromArray(c.sample.data, c.sample.shape),
      c.timesteps,
      Tensor.fromArray(c.context.data, c.context.shape),
    )
  );
  assert.deepEqual(y.shape, c.sample.shape);
  const out = await y.toArray();
  y.dispose();
  return out;
}

for (const dtype of ["f32", "f16"] as const) {
  Deno.test(`U-Net sd1-tiny matches diffusers (${dtype})`, async () => {
    const cs = await cases("sd1-tiny");
    const path = fixture("sd1-tiny/model.safetensors");
    if (cs === null || path === null) return;
    await initGpu();
    const before = rt().storage.stats().liveBytes;
    const sd = await loadStableDiffusion(path, { dtype, parts: ["unet"] });
    try {
      const tol = dtype === "f32" ? 1e-4 : 2e-2;
      assertClose(`unet_out ${dtype}`, await run(sd.unet, cs.square), cs.square.out, tol);
      if (dtype === "f32") {
        assertClose("unet_out_rect", await run(sd.unet, cs._rect), cs._rect.out, tol);
      }
    } finally {
      sd.dispose();
    }
    assert.equal(rt().storage.stats().liveBytes, before, "GPU pool back to its baseline");
  });
}

Deno.test("U-Net sd2-tiny (linear projections, head width 16) matches diffusers", async () => {
  const cs = await cases("sd2-tiny");
  const path = fixture("sd2-tiny/model.safetensors");
  if (cs === null || path === null) return;
  await initGpu();
  const ckpt = await loadCheckpoint(path);
  const weights = await uploadWeights(ckpt, "unet");
  ckpt.close();
  const config = ckpt.config.unet;
  assert.equal(config.useLinearProjection, true);
  assert.deepEqual(config.numHeads, [2, 4, 4, 4]); // a fixed head width of 16, as model.yaml says
  const unet = new UNet2DConditionModel(weights, config);
  try {
    assertClose("sd2 unet_out", await run(unet, cs.square), cs.square.out, 1e-4);
    assertClose("sd2 unet_out_rect", await run(unet, cs._rect), cs._rect.out, 1e-4);
  } finally {
    unet.dispose();
  }
});

Deno.test("nearest resize to the skip's size matches PyTorch's floor(dst * in / out)", async () => {
  await initGpu();
  const [n, c, h, w] = [1, 2, 3, 4];
  const x = randn(n * c * h * w, 7);
  for (const [oh, ow] of [[5, 7], [6, 8], [5, 8], [7, 9]]) {
    const y = scope(() => resizeNearest(Tensor.fromArray(x, [n, c, h, w]), oh, ow));
    assert.deepEqual(y.shape, [n, c, oh, ow]);
    const got = await y.toArray();
    y.dispose();
    const want = new Float32Array(n * c * oh * ow);
    for (let p = 0; p < n * c; p++) {
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const si = Math.floor((i * h) / oh), sj = Math.floor((j * w) / ow);
          want[(p * oh + i) * ow + j] = x[(p * h + si) * w + sj];
        }
      }
    }
    assert.deepEqual(got, want, `${h}x${w} -> ${oh}x${ow}`);
  }
});

Deno.test("U-Net: odd latent sizes, gradients to LoRA targets, bad inputs", async (t) => {
  const path = fixture("sd1-tiny/model.safetensors");
  if (path === null) return;
  await initGpu();
  const sd = await loadStableDiffusion(path, { parts: ["unet"] });
  const unet = sd.unet;
  const ctx = () => Tensor.fromArray(randn(2 * 77 * 32, 3), [2, 77, 32]);
  try {
    await t.step("latents that are not a multiple of 8 (diffusers' upsample_size)", async () => {
      const y = scope(() =>
        unet.forward(Tensor.fromArray(randn(2 * 4 * 10 * 13, 2), [2, 4, 10, 13]), [5], ctx())
      );
      assert.deepEqual(y.shape, [2, 4, 10, 13]);
      assert.ok((await y.toArray()).every(Number.isFinite));
      y.dispose();
    });

    await t.step("modules() lists every Linear/Conv2d once, by internal name", () => {
      const names = unet.modules().map((m) => m.name);
      assert.equal(new Set(names).size, names.length);
      assert.ok(names.includes("unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"));
      assert.ok(names.includes("unet.up_blocks.3.resnets.2.conv_shortcut"));
      assert.ok(names.includes("unet.mid_block.resnets.0.time_emb_proj"));
    });

    await t.step("backward reaches a to_q weight and a conv weight", async () => {
      const names = [
        "unet.up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_q.weight",
        "unet.down_blocks.0.resnets.0.conv1.weight",
      ];
      const params = names.map((n) => unet.weights.get(n).param());
      const step = () =>
        scope(() => {
          const y = unet.forward(
            Tensor.fromArray(randn(2 * 4 * 8 * 8, 5), [2, 4, 8, 8]),
            [10, 700],
            ctx(),
          );
          backward(mean(square(y)));
        });
      // Frozen conv weights keep their packed operands: the baseline is taken after one step.
      step();
      for (const p of params) (p.grad?.dispose(), p.grad = null);
      const before = rt().storage.stats().liveBytes;
      try {
        step();
        for (const [k, p] of params.entries()) {
          assert.ok(p.grad, `${names[k]} got a gradient`);
          const g = await p.grad.toArray();
          assert.ok(g.every(Number.isFinite) && g.some((v) => v !== 0), names[k]);
        }
      } finally {
        for (const p of params) {
          p.grad?.dispose();
          p.grad = null;
          p.requiresGrad = false;
        }
      }
      assert.equal(rt().storage.stats().liveBytes, before, "graph and gradients freed");
    });

    await t.step("bad shapes are LorakitErrors naming them", () => {
      const bad = (f: () => unknown, re: RegExp) =>
        assert.throws(
          () => scope(f),
          (e: Error) => e instanceof LorakitError && re.test(e.message),
        );
      bad(() => unet.forward(Tensor.zeros([2, 3, 8, 8]), [1], ctx()), /\[2,3,8,8\]/);
      bad(() => unet.forward(Tensor.zeros([2, 4, 8, 8]), [1], Tensor.zeros([2, 77, 768])), /768/);
      bad(() => unet.forward(Tensor.zeros([1, 4, 8, 8]), [1], ctx()), /batch/);
      bad(() => unet.forward(Tensor.zeros([2, 4, 8, 8]), [1, 2, 3], ctx()), /timesteps/);
    });
  } finally {
    sd.dispose();
  }
});
