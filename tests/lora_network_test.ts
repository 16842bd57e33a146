/**
 * The LoRA network at run time on sd1-tiny: kohya's files applied at multiplier 0.7 reproduce
 * kohya's text encoder and U-Net outputs; multiplier 0 is the base model exactly; merging equals
 * applying; two networks add; a new network trains its parameters; save/load round trips.
 */
import assert from "node:assert/strict";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import { backward, initGpu, mseLoss, noGrad, scope, Tensor } from "../gpu/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusion, type StableDiffusion } from "../core/models/mod.ts";
import { createNetwork, createNetworkFromWeights } from "../core/lora/network.ts";
import { fixture } from "./fixtures.ts";
import { assertClose, relErr } from "./op_check.ts";

interface Inputs {
  ids: Int32Array;
  sample: Tensor;
  timesteps: number[];
}

async function inputs(): Promise<Inputs | null> {
  const path = fixture("sd1-tiny/forward.safetensors");
  if (!path) return null;
  const f = await openSafetensors(path);
  const ids = Int32Array.from((await f.readF32("te_ids")).data);
  const s = await f.readF32("unet_sample");
  const t = await f.readF32("unet_timesteps");
  f.close();
  return { ids, sample: Tensor.fromArray(s.data, s.shape).keep(), timesteps: Array.from(t.data) };
}

/** Text encoder then U-Net, as the kohya fixture ran them. */
async function run(
  sd: StableDiffusion,
  x: Inputs,
): Promise<{ te: Float32Array; unet: Float32Array }> {
  const { te, out } = noGrad(() =>
    scope(() => {
      const te = sd.textEncoder.forward(x.ids);
      return { te, out: sd.unet.forward(x.sample, x.timesteps, te) };
    })
  );
  const r = { te: await te.toArray(), unet: await out.toArray() };
  te.dispose();
  out.dispose();
  return r;
}

let cached:
  | { sd: StableDiffusion; x: Inputs; base: { te: Float32Array; unet: Float32Array } }
  | null = null;
async function setup() {
  if (cached) return cached;
  const model = fixture("sd1-tiny/model.safetensors");
  if (!model) return null;
  await initGpu();
  const sd = await loadStableDiffusion(model);
  const x = (await inputs())!;
  cached = { sd, x, base: await run(sd, x) };
  return cached;
}

Deno.test("kohya LoRA files applied at 0.7 match kohya's outputs (LierLa, C3Lier)", async () => {
  const s = await setup();
  const ref = fixture("kohya/lora_forward.safetensors");
  if (!s || !ref) return;
  const f = await openSafetensors(ref);
  for (const name of ["lierla_a", "c3lier"]) {
    const net = await createNetworkFromWeights(0.7, fixture(`kohya/${name}.safetensors`)!, s.sd);
    net.applyTo(s.sd);
    const got = await run(s.sd, s.x);
    assertClose(`${name} te`, got.te, (await f.readF32(`${name}_te_last`)).data, 1e-4);
    assertClose(`${name} unet`, got.unet, (await f.readF32(`${name}_unet_out`)).data, 1e-4);
    // Multiplier 0 gives the base model exactly.
    net.setMultiplier(0);
    const zero = await run(s.sd, s.x);
    assert.deepEqual(zero.unet, s.base.unet);
    assert.deepEqual(zero.te, s.base.te);
    net.dispose();
  }
  f.close();
});

Deno.test("two networks at once add their deltas; merging equals applying", async () => {
  const s = await setup();
  if (!s) return;
  const a = fixture("kohya/lierla_a.safetensors")!, b = fixture("kohya/lierla_b.safetensors")!;
  const na = await createNetworkFromWeights(0.5, a, s.sd);
  na.applyTo(s.sd);
  const onlyA = await run(s.sd, s.x);
  const nb = await createNetworkFromWeights(0.5, b, s.sd);
  nb.applyTo(s.sd);
  const both = await run(s.sd, s.x);
  na.restore();
  const onlyB = await run(s.sd, s.x);
  nb.restore();
  // LoRA on the text encoder changes the U-Net's context, so compare the text encoder branch,
  // where each module's delta is additive in its own layer's output only to first order; the
  // exact additivity holds per layer: check it on a single linear layer below instead.
  assert.ok(relErr(both.te, s.base.te) > 0);
  assert.ok(relErr(onlyA.te, onlyB.te) > 0);
  // Per-layer additivity: one projection with both networks = base + delta_a + delta_b.
  const layer = s.sd.unet.modules().find((m) => m.name.endsWith("attn1.to_q"))!;
  const inp = Tensor.fromArray(
    new Float32Array(2 * 5 * layer.weight.shape[1]).map((_, i) => Math.sin(i)),
    [2, 5, layer.weight.shape[1]],
  );
  const y0 = await noGrad(() => layer.forward(inp)).toArray();
  na.applyTo(s.sd);
  const ya = await noGrad(() => layer.forward(inp)).toArray();
  nb.applyTo(s.sd);
  const yab = await noGrad(() => layer.forward(inp)).toArray();
  na.restore();
  nb.restore();
  nb.applyTo(s.sd);
  const yb = await noGrad(() => layer.forward(inp)).toArray();
  nb.restore();
  const sum = y0.map((v, i) => ya[i] + yb[i] - v);
  assertClose("additive deltas", yab, sum, 1e-5);
  inp.dispose();
  // Merge: apply A at 0.5 vs merged A at 0.5, on a fresh model.
  const merged = await loadStableDiffusion(fixture("sd1-tiny/model.safetensors")!);
  const nm = await createNetworkFromWeights(0.5, a, merged);
  nm.mergeTo(merged);
  const m = await run(merged, s.x);
  assertClose("merged te", m.te, onlyA.te, 1e-4);
  assertClose("merged unet", m.unet, onlyA.unet, 1e-4);
  nm.dispose();
  merged.dispose();
  na.dispose();
  nb.dispose();
});

Deno.test("a new C3Lier network trains, saves and reloads with kohya's keys", async () => {
  const s = await setup();
  if (!s) return;
  const net = createNetwork(s.sd, {
    dim: 4,
    alpha: 2,
    args: parseNetworkArgs(["conv_dim=2", "conv_alpha=1"]),
    seed: 1,
  });
  net.applyTo(s.sd);
  net.setTraining(true);
  // Up factors start at zero: the network changes nothing until trained.
  const first = await run(s.sd, s.x);
  assert.deepEqual(first.unet, s.base.unet);
  const target = Tensor.zeros(s.x.sample.shape).keep();
  const loss = scope(() => {
    const te = s.sd.textEncoder.forward(s.x.ids);
    return mseLoss(s.sd.unet.forward(s.x.sample, s.x.timesteps, te), target);
  });
  backward(loss);
  loss.dispose();
  const withGrad = net.parameters().filter((p) => p.grad !== null).length;
  assert.equal(withGrad, net.parameters().length);
  for (const p of net.parameters()) {
    p.grad!.dispose();
    p.grad = null;
  }
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  const meta = await net.save(out, { ss_network_dim: "4" }, "float");
  assert.ok(meta.sshs_model_hash);
  const again = await createNetworkFromWeights(1, out, s.sd);
  assert.equal(again.modules.length, net.modules.length);
  assert.ok(again.modules.some((m) => m.spec.kind === "conv3x3"));
  again.dispose();
  net.dispose();
  target.dispose();
  await Deno.remove(out);
});

Deno.test("DyLoRA trains one rank chunk per step and saves kohya's full-rank layout", async () => {
  const s = await setup();
  if (!s) return;
  const net = createNetwork(s.sd, {
    module: "networks.dylora",
    dim: 4,
    alpha: 4,
    args: parseNetworkArgs(["unit=2"], "networks.dylora"),
    seed: 3,
  });
  net.applyTo(s.sd);
  net.setTraining(true);
  const target = Tensor.zeros(s.x.sample.shape).keep();
  const loss = scope(() => {
    const te = s.sd.textEncoder.forward(s.x.ids);
    return mseLoss(s.sd.unet.forward(s.x.sample, s.x.timesteps, te), target);
  });
  backward(loss);
  loss.dispose();
  for (const m of net.modules) {
    // Exactly one chunk (of dim / unit = 2) is trainable in each module this step.
    assert.equal(m.downs.filter((t) => t.requiresGrad).length, 1);
    assert.equal(m.downs.length, 2);
    for (const t of m.parameters()) {
      t.grad?.dispose();
      t.grad = null;
    }
  }
  const out = await Deno.makeTempFile({ suffix: ".safetensors" });
  await net.save(out, {}, "float");
  const again = await createNetworkFromWeights(1, out, s.sd);
  assert.ok(again.modules.every((m) => m.spec.rank === 4));
  again.dispose();
  net.dispose();
  target.dispose();
  await Deno.remove(out);
});

Deno.test("dropouts apply only in training and keep shapes", async () => {
  const s = await setup();
  if (!s) return;
  const net = createNetwork(s.sd, {
    dim: 4,
    args: parseNetworkArgs(["rank_dropout=0.5", "module_dropout=0.25"]),
    dropout: 0.1,
    unetOnly: true,
    seed: 5,
  });
  net.applyTo(s.sd);
  const layer = s.sd.unet.modules().find((m) => m.name.endsWith("attn1.to_q"))!;
  const x = Tensor.fromArray(
    new Float32Array(2 * 3 * layer.weight.shape[1]).map((_, i) => Math.cos(i)),
    [2, 3, layer.weight.shape[1]],
  );
  // Give the factors non-zero values through a merge-free path: train-mode outputs must differ
  // from eval-mode outputs only through the dropouts, which need a non-zero branch.
  for (const m of net.modules) {
    const u = m.ups[0];
    const filled = Tensor.full(u.shape, 0.05);
    const data = await filled.toArray();
    filled.dispose();
    m.ups[0] = Tensor.fromArray(data, u.shape).keep().param();
    u.dispose();
  }
  net.setTraining(false);
  const evalA = await noGrad(() => layer.forward(x)).toArray();
  const evalB = await noGrad(() => layer.forward(x)).toArray();
  assert.deepEqual(evalA, evalB);
  net.setTraining(true);
  let differs = false;
  for (let i = 0; i < 4 && !differs; i++) {
    const t = await noGrad(() => layer.forward(x)).toArray();
    assert.equal(t.length, evalA.length);
    differs = relErr(t, evalA) > 1e-6;
  }
  assert.ok(differs, "training-mode dropouts never changed the output");
  x.dispose();
  net.dispose();
});
