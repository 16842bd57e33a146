/**
 * The CLIP text encoder against transformers' outputs on the tiny fixtures: `last_hidden_state`
 * and kohya's clip_skip 2 for SD1 (from all three file forms, f32 and f16) and SD2 (OpenCLIP
 * converted by the loader), kohya's long-prompt windows, and errors for bad ids.
 */
import assert from "node:assert/strict";
import { initGpu, rt, scope } from "../gpu/mod.ts";
import { LorakitError } from "../core/errors.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusion } from "../core/models/mod.ts";
import { stitchWindowStates, windowIds } from "../core/text/token_windows.ts";
import { fixture } from "./fixtures.ts";
import { assertClose, relErr } from "./op_check.ts";

interface Golden {
  ids: Int32Array;
  last: Float32Array;
  penultimate: Float32Array;
  prompts: string[];
}

async function golden(variant: string): Promise<Golden | null> {
  const path = fixture(`${variant}/forward.safetensors`);
  if (path === null) return null;
  const f = await openSafetensors(path);
  try {
    return {
      ids: Int32Array.from((await f.readF32("te_ids")).data),
      last: (await f.readF32("te_last")).data,
      penultimate: (await f.readF32("te_penultimate_ln")).data,
      prompts: JSON.parse(f.metadata.prompts),
    };
  } finally {
    f.close();
  }
}

/** Load only the text encoder from `model`, check both outputs, free it; returns the errors. */
async function checkTextEncoder(
  variant: string,
  model: string,
  dtype: "f32" | "f16",
  tol: number,
): Promise<[number, number] | null> {
  const g = await golden(variant);
  const path = fixture(`${variant}/${model}`);
  if (g === null || path === null) return null;
  await initGpu();
  const before = rt().storage.stats().liveBytes;
  const sd = await loadStableDiffusion(path, { dtype, parts: ["text_encoder"] });
  try {
    const last = sd.textEncoder.forward(g.ids);
    const pen = sd.textEncoder.forward(g.ids, { clipSkip: 2 });
    assert.deepEqual(last.shape, [2, 77, sd.config.textEncoder.hiddenSize]);
    const got = [await last.toArray(), await pen.toArray()];
    last.dispose();
    pen.dispose();
    const what = `${variant}/${model} ${dtype}`;
    assertClose(`${what} te_last`, got[0], g.last, tol);
    assertClose(`${what} te_penultimate_ln`, got[1], g.penultimate, tol);
    return [relErr(got[0], g.last), relErr(got[1], g.penultimate)];
  } finally {
    sd.dispose();
    rt().flush();
    assert.equal(rt().storage.stats().liveBytes, before, "GPU pool back to its baseline");
  }
}

for (const model of ["model.safetensors", "model.ckpt", "diffusers"]) {
  Deno.test(`CLIP text encoder sd1-tiny (${model}) matches transformers in f32`, async () => {
    await checkTextEncoder("sd1-tiny", model, "f32", 1e-4);
  });
}

Deno.test("CLIP text encoder sd1-tiny in f16 within 2e-2", async () => {
  await checkTextEncoder("sd1-tiny", "model.safetensors", "f16", 2e-2);
});

Deno.test("CLIP text encoder sd2-tiny (OpenCLIP, GELU) matches in f32 and f16", async () => {
  await checkTextEncoder("sd2-tiny", "model.safetensors", "f32", 1e-4);
  await checkTextEncoder("sd2-tiny", "model.safetensors", "f16", 2e-2);
});

Deno.test("tokenizer of a loaded sd1-tiny gives the fixture's ids", async () => {
  const g = await golden("sd1-tiny");
  const path = fixture("sd1-tiny/model.safetensors");
  if (g === null || path === null) return;
  await initGpu();
  const sd = await loadStableDiffusion(path, { parts: [] });
  const ids = g.prompts.flatMap((p) => sd.tokenizer.pad(sd.tokenizer.encode(p), 77));
  assert.deepEqual(ids, Array.from(g.ids));
  sd.dispose();
});

Deno.test("long prompts: windows encoded separately and stitched like kohya", async () => {
  const path = fixture("sd1-tiny/model.safetensors");
  const g = await golden("sd1-tiny");
  if (path === null || g === null) return;
  await initGpu();
  const sd = await loadStableDiffusion(path, { parts: ["text_encoder"] });
  try {
    const w = windowIds(sd.tokenizer, g.prompts, 150);
    assert.equal(w.windows, 2);
    const [stitched, plain] = scope(() => [
      sd.textEncoder.forwardWindows(w, { clipSkip: 2 }),
      sd.textEncoder.forward(w.ids, { clipSkip: 2 }),
    ]);
    assert.deepEqual(stitched.shape, [2, 152, 32]);
    const want = stitchWindowStates(await plain.toArray(), 2, 2, 32);
    assert.deepEqual(await stitched.toArray(), want);
    stitched.dispose();
    plain.dispose();
  } finally {
    sd.dispose();
  }
});

Deno.test("text encoder rejects bad ids and clip skip with LorakitError", async () => {
  const path = fixture("sd1-tiny/model.safetensors");
  if (path === null) return;
  await initGpu();
  const sd = await loadStableDiffusion(path, { parts: ["text_encoder"] });
  try {
    assert.throws(() => sd.textEncoder.forward(new Int32Array(76)), LorakitError);
    assert.throws(
      () => sd.textEncoder.forward(new Int32Array(77).fill(49408)),
      (e: Error) => e instanceof LorakitError && /49408/.test(e.message),
    );
    assert.throws(
      () => sd.textEncoder.forward(new Int32Array(77), { clipSkip: 4 }),
      LorakitError,
    );
    assert.throws(() => sd.unet, (e: Error) => e instanceof LorakitError && /unet/.test(e.message));
  } finally {
    sd.dispose();
  }
});
