/**
 * kohya LoRA networks on SDXL (sdxl-tiny/kohya): the module list of a new network (names, ranks,
 * alphas, shapes) equals kohya's for LierLa and C3Lier; kohya's files applied at multiplier 0.7
 * reproduce both text encoders' penultimate states, the context, the U-Net with the fixture's
 * conditioning, and (with kohya's pooled convention) `y` and the U-Net on the LoRA's own
 * conditioning; merging equals applying; a saved network has kohya's keys and SDXL metadata.
 */
import assert from "node:assert/strict";
import { parseNetworkArgs } from "../core/kohya/network_args.ts";
import {
  concat,
  initGpu,
  matmul,
  noGrad,
  rt,
  scope,
  type Tensor,
  Tensor as T,
} from "../gpu/mod.ts";
import type { HostTensor } from "../core/io/tensor_source.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import {
  encodeTe2,
  loadStableDiffusion,
  loadStableDiffusionXL,
  sdxlVector,
  type StableDiffusionXL,
} from "../core/models/mod.ts";
import { eosRows, textProjection } from "../core/models/sdxl_conditioning.ts";
import { gatherRows } from "../core/models/ops.ts";
import { createNetwork, createNetworkFromWeights } from "../core/lora/network.ts";
import { openLoraFile, saveLoraFile } from "../core/lora/lora_file.ts";
import { LorakitError } from "../core/errors.ts";
import { modelSpecMetadata, networkMetadata } from "../core/lora/metadata.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";

type Refs = Map<string, HostTensor>;

async function readAll(path: string): Promise<Refs> {
  const f = await openSafetensors(path);
  try {
    const m: Refs = new Map();
    for (const t of f.list()) m.set(t.name, await f.readF32(t.name));
    return m;
  } finally {
    f.close();
  }
}

const get = (r: Refs, k: string): HostTensor => {
  const t = r.get(k);
  if (t === undefined) throw new Error(`no reference '${k}'`);
  return t;
};
const upload = (h: HostTensor): Tensor => T.fromArray(h.data, h.shape);
const rows = (h: HostTensor): number[][] => {
  const [b, n] = h.shape;
  return Array.from({ length: b }, (_, i) => Array.from(h.data.subarray(i * n, (i + 1) * n)));
};

interface Setup {
  sd: StableDiffusionXL;
  fwd: Refs;
  lora: Refs;
  ids1: Int32Array;
  ids2: Int32Array;
}

let cached: Setup | null = null;
async function setup(): Promise<Setup | null> {
  if (cached) return cached;
  const model = fixture("sdxl-tiny/model.safetensors");
  const fwdPath = fixture("sdxl-tiny/forward.safetensors");
  const loraPath = fixture("sdxl-tiny/kohya/lora_forward.safetensors");
  if (!model || !fwdPath || !loraPath) return null;
  await initGpu();
  const sd = await loadStableDiffusionXL(model);
  const fwd = await readAll(fwdPath);
  const ids = (k: string) => Int32Array.from(get(fwd, k).data);
  cached = { sd, fwd, lora: await readAll(loraPath), ids1: ids("te1_ids"), ids2: ids("te2_ids") };
  return cached;
}

/** Everything kohya's lora_forward references hold, computed on the model as it is now. */
async function outputs(s: Setup): Promise<Record<string, Float32Array>> {
  const { sd, fwd } = s;
  const add = sd.config.unet.addEmbedding!;
  const timeIds = rows(get(fwd, "unet_time_ids"));
  const sample = () => upload(get(fwd, "unet_sample"));
  const timesteps = Array.from(get(fwd, "unet_timesteps").data);
  const out = noGrad(() =>
    scope(() => {
      const te1 = sd.textEncoder, te2 = sd.textEncoder2;
      const [te1Pen] = te1.hiddenStates(s.ids1, [te1.config.numLayers - 1]);
      const t2 = encodeTe2(te2, s.ids2);
      const context = concat([te1Pen, t2.penultimate], 2);
      // kohya's pooled output: TE2's state at EOS times the stored OpenCLIP matrix P
      // untransposed, x @ P^T = x @ W for the internal Linear weight W = P^T.
      const rowsEos = eosRows(s.ids2, te2.config.maxPositions);
      const eos = gatherRows(t2.last, rowsEos, [rowsEos.length, te2.config.hiddenSize]);
      const pool = matmul(eos, textProjection(te2).weight);
      const y = sdxlVector(pool, timeIds, add);
      const unetOut = sd.unet.forward(sample(), timesteps, context, y);
      const fixed = sd.unet.forward(
        sample(),
        timesteps,
        upload(get(fwd, "unet_context")),
        upload(get(fwd, "unet_y")),
      );
      return {
        te1_penultimate: te1Pen,
        te2_penultimate: t2.penultimate,
        te2_pool: pool,
        context,
        unet_y: y,
        unet_out: unetOut,
        unet_out_fixed_cond: fixed,
      };
    })
  );
  const res: Record<string, Float32Array> = {};
  for (const [k, t] of Object.entries(out)) {
    res[k] = await t.toArray();
    t.dispose();
  }
  return res;
}

/** Relative error of every `<name>_<key>` reference; asserted within 1e-4. */
function compare(name: string, got: Record<string, Float32Array>, lora: Refs): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(got)) {
    const e = relErr(v, get(lora, `${name}_${k}`).data);
    parts.push(`${k} ${e.toExponential(2)}`);
    assert.ok(e <= 1e-4, `${name} ${k}: relative error ${e} > 1e-4`);
  }
  return `${name}: ${parts.join(", ")}`;
}

interface ModuleSpecJson {
  lora_te1: string[];
  lora_te2: string[];
  lora_unet: string[];
  rank_alpha_down_up_shapes: Record<string, [number, number, number[], number[]]>;
}

Deno.test("SDXL: a new network has kohya's modules, ranks, alphas and shapes (LierLa, C3Lier)", async () => {
  const s = await setup();
  const specPath = fixture("sdxl-tiny/kohya/lora_modules.json");
  if (!s || !specPath) return;
  const spec = JSON.parse(await Deno.readTextFile(specPath)) as Record<string, ModuleSpecJson>;
  const cases: [string, string[]][] = [["lierla", []], ["c3lier", ["conv_dim=2", "conv_alpha=1"]]];
  for (const [name, args] of cases) {
    const want = spec[name];
    const net = createNetwork(s.sd, { dim: 4, alpha: 2, args: parseNetworkArgs(args) });
    try {
      const names = net.modules.map((m) => m.spec.prefix);
      const of = (p: string) => names.filter((n) => n.startsWith(p)).sort();
      assert.deepEqual(of("lora_te1_"), want.lora_te1, `${name} lora_te1`);
      assert.deepEqual(of("lora_te2_"), want.lora_te2, `${name} lora_te2`);
      assert.deepEqual(of("lora_unet_"), want.lora_unet, `${name} lora_unet`);
      assert.equal(names.length, Object.keys(want.rank_alpha_down_up_shapes).length);
      for (const m of net.modules) {
        const { down, up } = m.factors();
        const got = [m.spec.rank, m.spec.alpha, down.shape, up.shape];
        assert.deepEqual(got, want.rank_alpha_down_up_shapes[m.spec.prefix], m.spec.prefix);
      }
    } finally {
      net.dispose();
    }
  }
});

Deno.test("SDXL: kohya's LoRA files applied at 0.7 reproduce kohya's outputs", async () => {
  const s = await setup();
  if (!s) return;
  // Without LoRA, the kohya-convention pipeline gives kohya's base references.
  const base = await outputs(s);
  rt().flush();
  const before = rt().storage.stats().liveBytes;
  for (const k of ["te2_pool", "unet_y", "unet_out"]) {
    const e = relErr(base[k], get(s.lora, `base_${k}`).data);
    assert.ok(e <= 1e-4, `base ${k}: relative error ${e}`);
  }
  for (const name of ["lierla", "c3lier"]) {
    const file = fixture(`sdxl-tiny/kohya/${name}.safetensors`)!;
    const net = await createNetworkFromWeights(0.7, file, s.sd);
    try {
      assert.equal(net.sdxl?.layersPerBlock, 2);
      net.applyTo(s.sd);
      console.log(compare(name, await outputs(s), s.lora));
      // Multiplier 0: the base model exactly.
      net.setMultiplier(0);
      const zero = await outputs(s);
      assert.deepEqual(zero.unet_out, base.unet_out);
      assert.deepEqual(zero.te2_penultimate, base.te2_penultimate);
    } finally {
      net.dispose();
    }
  }
  rt().flush();
  assert.equal(rt().storage.stats().liveBytes, before, "GPU pool back to its baseline");
});

Deno.test("SDXL: a LoRA saved here has kohya's keys and SDXL metadata, and reloads", async () => {
  const s = await setup();
  if (!s) return;
  const dir = await Deno.makeTempDir();
  try {
    for (
      const [name, args] of [["lierla", []], ["c3lier", ["conv_dim=2", "conv_alpha=1"]]] as [
        string,
        string[],
      ][]
    ) {
      const ref = await openLoraFile(fixture(`sdxl-tiny/kohya/${name}.safetensors`)!);
      const refMeta = ref.metadata;
      const refKeys = ref.modules.map((m) => m.prefix).sort();
      ref.close();
      // A file loaded and saved again: same keys and tensors.
      const loaded = await createNetworkFromWeights(
        1,
        fixture(`sdxl-tiny/kohya/${name}.safetensors`)!,
        s.sd,
      );
      const out = `${dir}/${name}.safetensors`;
      const meta = {
        ...networkMetadata({
          v2: false,
          sdxl: true,
          networkDim: 4,
          networkAlpha: 2,
          networkArgs: args.length > 0 ? { conv_dim: "2", conv_alpha: "1" } : null,
        }),
        ...modelSpecMetadata({
          v2: false,
          sdxl: true,
          timestamp: 1765000000,
          title: `sdxl-tiny ${name}`,
          implementationVersion: "sd-scripts/unknown",
        }),
      };
      await loaded.save(out, meta, "float");
      loaded.dispose();
      const again = await openLoraFile(out);
      const want = await readAll(fixture(`sdxl-tiny/kohya/${name}.safetensors`)!);
      const got = await readAll(out);
      assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort(), `${name} keys`);
      for (const [k, v] of want) assert.deepEqual(got.get(k)!.data, v.data, k);
      for (const k of Object.keys(refMeta)) {
        if (k === "modelspec.date" || k.startsWith("sshs_")) continue;
        assert.equal(again.metadata[k], refMeta[k], `${name} metadata ${k}`);
      }
      assert.equal(again.version.version, "sdxl");
      again.close();
      // A new network saves the same key set as kohya's file.
      const fresh = createNetwork(s.sd, { dim: 4, alpha: 2, args: parseNetworkArgs(args) });
      const freshOut = `${dir}/${name}_new.safetensors`;
      await fresh.save(freshOut, meta, "fp16");
      fresh.dispose();
      const f = await openLoraFile(freshOut);
      assert.deepEqual(f.modules.map((m) => m.prefix).sort(), refKeys);
      f.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SDXL: merging a kohya LoRA equals applying it", async () => {
  const s = await setup();
  if (!s) return;
  const file = fixture("sdxl-tiny/kohya/c3lier.safetensors")!;
  const applied = await createNetworkFromWeights(0.7, file, s.sd);
  applied.applyTo(s.sd);
  const want = await outputs(s);
  applied.dispose();
  const model = fixture("sdxl-tiny/model.safetensors")!;
  const merged = await loadStableDiffusionXL(model);
  const s2: Setup = { ...s, sd: merged };
  try {
    const net = await createNetworkFromWeights(0.7, file, merged);
    net.mergeTo(merged);
    net.dispose();
    const got = await outputs(s2);
    for (const k of Object.keys(want)) {
      const e = relErr(got[k], want[k]);
      assert.ok(e <= 1e-4, `merged ${k}: relative error ${e}`);
    }
  } finally {
    merged.dispose();
  }
});

Deno.test("SDXL: U-Net modules named the diffusers way load under kohya's SGM names", async () => {
  const s = await setup();
  if (!s) return;
  const file = fixture("sdxl-tiny/kohya/lierla.safetensors")!;
  const sgm = await createNetworkFromWeights(1, file, s.sd);
  const dir = await Deno.makeTempDir();
  try {
    const diffusersName = (weight: string) =>
      `lora_unet_${weight.slice("unet.".length, -".weight".length).replaceAll(".", "_")}`;
    const mods = await Promise.all(sgm.modules.map(async (m) => ({
      prefix: m.spec.part === "unet" ? diffusersName(m.spec.weight) : m.spec.prefix,
      down: { shape: m.downs[0].shape, data: await m.downs[0].toArray() },
      up: { shape: m.ups[0].shape, data: await m.ups[0].toArray() },
      alpha: m.spec.alpha,
    })));
    assert.ok(mods.some((m) => m.prefix.startsWith("lora_unet_down_blocks_1_attentions_0_")));
    const out = `${dir}/diffusers_names.safetensors`;
    await saveLoraFile(out, mods, { precision: "float" });
    const net = await createNetworkFromWeights(1, out, s.sd);
    const byPrefix = new Map(net.modules.map((m) => [m.spec.prefix, m]));
    assert.deepEqual([...byPrefix.keys()].sort(), sgm.modules.map((m) => m.spec.prefix).sort());
    for (const m of sgm.modules) {
      const other = byPrefix.get(m.spec.prefix)!;
      assert.equal(other.spec.weight, m.spec.weight);
      assert.deepEqual(await other.ups[0].toArray(), await m.ups[0].toArray(), m.spec.prefix);
    }
    net.dispose();
    // Both names for one layer: an error naming both.
    const both = `${dir}/both.safetensors`;
    const q = sgm.modules.find((m) => m.spec.prefix.endsWith("input_blocks_4_1_proj_in"))!;
    const twice = mods.filter((m) => m.prefix === diffusersName(q.spec.weight));
    await saveLoraFile(both, [...twice, { ...twice[0], prefix: q.spec.prefix }], {
      precision: "float",
    });
    await assert.rejects(
      createNetworkFromWeights(1, both, s.sd),
      (e: Error) => e instanceof LorakitError && /both modify model layer/.test(e.message),
    );
  } finally {
    sgm.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SDXL: a DyLoRA network has kohya's SDXL modules in rank chunks and saves full rank", async () => {
  const s = await setup();
  if (!s) return;
  const net = createNetwork(s.sd, {
    module: "networks.dylora",
    dim: 4,
    alpha: 4,
    args: parseNetworkArgs(["unit=2"], "networks.dylora"),
  });
  const dir = await Deno.makeTempDir();
  try {
    assert.equal(net.modules.length, 18 + 24 + 192);
    assert.ok(net.modules.every((m) => m.downs.length === 2 && m.spec.rank === 4));
    const out = `${dir}/dylora.safetensors`;
    await net.save(out, { ss_network_module: "networks.dylora" }, "float");
    const f = await openLoraFile(out);
    assert.equal(f.kind, "DyLoRA");
    assert.equal(f.version.version, "sdxl");
    assert.ok(f.modules.every((m) => m.rank === 4));
    assert.ok(f.modules.some((m) => m.prefix.startsWith("lora_te2_")));
    f.close();
  } finally {
    net.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SDXL: kohya's LoRA on an f16 model within 2e-2", async () => {
  const s = await setup();
  if (!s) return;
  const sd = await loadStableDiffusionXL(fixture("sdxl-tiny/model.safetensors")!, { dtype: "f16" });
  const net = await createNetworkFromWeights(
    0.7,
    fixture("sdxl-tiny/kohya/c3lier.safetensors")!,
    sd,
  );
  try {
    net.applyTo(sd);
    const got = await outputs({ ...s, sd });
    const parts: string[] = [];
    for (const k of ["te1_penultimate", "te2_penultimate", "unet_out_fixed_cond", "unet_out"]) {
      const e = relErr(got[k], get(s.lora, `c3lier_${k}`).data);
      parts.push(`${k} ${e.toExponential(2)}`);
      assert.ok(e <= 2e-2, `f16 ${k}: relative error ${e} > 2e-2`);
    }
    console.log(`c3lier f16: ${parts.join(", ")}`);
  } finally {
    net.dispose();
    sd.dispose();
  }
});

Deno.test("SDXL: an SD 1.x LoRA on SDXL and an SDXL LoRA on SD 1.x are errors saying which is which", async () => {
  const s = await setup();
  const sd1File = fixture("kohya/lierla_a.safetensors");
  const sd1Model = fixture("sd1-tiny/model.safetensors");
  if (!s || !sd1File || !sd1Model) return;
  await assert.rejects(
    createNetworkFromWeights(1, sd1File, s.sd),
    (e: Error) =>
      e instanceof LorakitError && /looks made for SD 1\.x .*the model is SDXL/.test(e.message),
  );
  const sd1 = await loadStableDiffusion(sd1Model, { parts: ["text_encoder", "unet"] });
  try {
    await assert.rejects(
      createNetworkFromWeights(1, fixture("sdxl-tiny/kohya/lierla.safetensors")!, sd1),
      (e: Error) =>
        e instanceof LorakitError &&
        /lora_te1_.*looks made for SDXL \(ss_base_model_version = sdxl_base_v1-0\), the model is SD 1\.x/
          .test(e.message),
    );
  } finally {
    sd1.dispose();
  }
});
