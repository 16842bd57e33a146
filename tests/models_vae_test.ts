/**
 * The VAE against diffusers 0.21's `AutoencoderKL` on the tiny fixtures (encoder moments and
 * decoder output, f32 and f16), the right/bottom-padded downsampler on odd sizes, and errors for
 * bad inputs.
 */
import assert from "node:assert/strict";
import { attention, initGpu, noGrad, reshape, rt, scope, Tensor } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusion, ModelWeights } from "../core/models/mod.ts";
import { rowBlockedAttention } from "../core/models/ops.ts";
import { Downsample2D, VAE_DOWNSAMPLE_PADDING } from "../core/models/resnet.ts";
import { ModuleBuilder } from "../core/models/weights.ts";
import { fixture } from "./fixtures.ts";
import { assertClose, randn } from "./op_check.ts";

type Host = { shape: number[]; data: Float32Array };

async function golden(variant: string): Promise<Record<string, Host> | null> {
  const path = fixture(`${variant}/forward.safetensors`);
  if (path === null) return null;
  const f = await openSafetensors(path);
  try {
    const out: Record<string, Host> = {};
    for (const k of ["vae_image", "vae_mean", "vae_logvar", "vae_latent", "vae_decoded"]) {
      out[k] = await f.readF32(k);
    }
    return out;
  } finally {
    f.close();
  }
}

for (const [variant, dtype] of [["sd1-tiny", "f32"], ["sd1-tiny", "f16"], ["sd2-tiny", "f32"]]) {
  Deno.test(`VAE ${variant} encode and decode match diffusers (${dtype})`, async () => {
    const g = await golden(variant);
    const path = fixture(`${variant}/model.safetensors`);
    if (g === null || path === null) return;
    await initGpu();
    const before = rt().storage.stats().liveBytes;
    const sd = await loadStableDiffusion(path, { dtype: dtype as "f32" | "f16", parts: ["vae"] });
    const tol = dtype === "f32" ? 1e-4 : 2e-2;
    try {
      const { mean, logvar } = scope(() =>
        sd.vae.encode(Tensor.fromArray(g.vae_image.data, g.vae_image.shape))
      );
      assert.deepEqual(mean.shape, g.vae_mean.shape);
      assertClose(`${variant} vae_mean`, await mean.toArray(), g.vae_mean.data, tol);
      assertClose(`${variant} vae_logvar`, await logvar.toArray(), g.vae_logvar.data, tol);
      mean.dispose();
      logvar.dispose();
      const img = scope(() =>
        sd.vae.decode(Tensor.fromArray(g.vae_latent.data, g.vae_latent.shape))
      );
      assert.deepEqual(img.shape, g.vae_decoded.shape);
      assertClose(`${variant} vae_decoded`, await img.toArray(), g.vae_decoded.data, tol);
      img.dispose();
    } finally {
      sd.dispose();
    }
    assert.equal(rt().storage.stats().liveBytes, before, "GPU pool back to its baseline");
  });
}

Deno.test("VAE downsampler pads right and bottom by one, on even and odd sizes", async () => {
  await initGpu();
  const [cin, cout] = [3, 5];
  const w = randn(cout * cin * 9, 11), b = randn(cout, 12);
  const store = new ModelWeights(
    "vae",
    "f32",
    new Map([
      ["vae.d.conv.weight", Tensor.fromArray(w, [cout, cin, 3, 3]).keep()],
      ["vae.d.conv.bias", Tensor.fromArray(b, [cout]).keep()],
    ]),
    "<test>",
  );
  const down = new Downsample2D(new ModuleBuilder(store), "vae.d", VAE_DOWNSAMPLE_PADDING);
  for (const [h, wd] of [[6, 8], [5, 7]]) {
    const x = randn(cin * h * wd, h);
    const y = scope(() => down.forward(Tensor.fromArray(x, [1, cin, h, wd])));
    // diffusers: F.pad(x, (0, 1, 0, 1)) then a 3x3 conv, stride 2, no padding.
    const ho = Math.floor((h + 1 - 3) / 2) + 1, wo = Math.floor((wd + 1 - 3) / 2) + 1;
    assert.deepEqual(y.shape, [1, cout, ho, wo]);
    const want = new Float32Array(cout * ho * wo);
    for (let o = 0; o < cout; o++) {
      for (let i = 0; i < ho; i++) {
        for (let j = 0; j < wo; j++) {
          let s = b[o];
          for (let c = 0; c < cin; c++) {
            for (let ky = 0; ky < 3; ky++) {
              for (let kx = 0; kx < 3; kx++) {
                const yy = 2 * i + ky, xx = 2 * j + kx;
                if (yy >= h || xx >= wd) continue;
                s += x[(c * h + yy) * wd + xx] * w[((o * cin + c) * 3 + ky) * 3 + kx];
              }
            }
          }
          want[(o * ho + i) * wo + j] = s;
        }
      }
    }
    assertClose(`downsample ${h}x${wd}`, await y.toArray(), want, 1e-5);
    y.dispose();
  }
  store.dispose();
});

Deno.test("VAE rejects images whose size is not a multiple of 8 and wrong latents", async () => {
  const path = fixture("sd1-tiny/model.safetensors");
  if (path === null) return;
  await initGpu();
  const sd = await loadStableDiffusion(path, { parts: ["vae"] });
  try {
    const bad = (f: () => unknown, re: RegExp) =>
      assert.throws(() => scope(f), (e: Error) => e instanceof LorakitError && re.test(e.message));
    bad(() => sd.vae.encode(Tensor.zeros([1, 3, 60, 64])), /\[1,3,60,64\].*|multiples of 8/);
    bad(() => sd.vae.encode(Tensor.zeros([1, 4, 64, 64])), /\[1,4,64,64\]/);
    bad(() => sd.vae.decode(Tensor.zeros([1, 3, 8, 8])), /\[1,3,8,8\]/);
  } finally {
    sd.dispose();
  }
});

Deno.test("row-blocked wide-head attention equals the fused kernel and never holds T x T", async () => {
  await initGpu();
  const [b, t, d] = [1, 40, 24];
  const mk = (seed: number) => Tensor.fromArray(randn(b * t * d, seed), [b, t, d]);
  const q = mk(1), k = mk(2), v = mk(3);
  const want = await noGrad(() =>
    reshape(
      attention(reshape(q, [b, 1, t, d]), reshape(k, [b, 1, t, d]), reshape(v, [b, 1, t, d])),
      [b, t, d],
    )
  ).toArray();
  // Blocks of 4 query rows: scores are 4 x 40 floats at a time, never 40 x 40. Record the
  // largest buffer requested while it runs.
  const pool = rt().storage;
  const acquire = pool.acquire.bind(pool);
  let largest = 0;
  pool.acquire = (bytes: number) => {
    largest = Math.max(largest, bytes);
    return acquire(bytes);
  };
  let got: Tensor;
  try {
    got = noGrad(() => scope(() => rowBlockedAttention(q, k, v, 4 * 4 * t)));
  } finally {
    pool.acquire = acquire;
  }
  assertClose("row-blocked attention", await got.toArray(), want, 1e-5);
  assert.ok(largest < t * t * 4, `a ${largest}-byte buffer was allocated (T x T is ${t * t * 4})`);
  for (const x of [q, k, v, got]) x.dispose();
});
