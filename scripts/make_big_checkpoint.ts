/**
 * Write a full-size Stable Diffusion LDM checkpoint (real SD1.5 or, with `--sd2`, SD2.x key names
 * and shapes) filled with random weights, for I/O benchmarks and memory tests. The file is
 * streamed one tensor at a time, so this never holds more than the largest tensor in memory.
 *
 *   deno run -A scripts/make_big_checkpoint.ts OUT.safetensors [--sd2] [--dtype f16|bf16|f32]
 *   deno run -A scripts/make_big_checkpoint.ts --check   # generator vs the tiny fixtures
 *
 * The layout comes from the LDM module tree (openaimodel.py UNetModel, the AutoencoderKL in
 * model.py, CLIP / OpenCLIP text encoders), parametrised by widths. `--check` builds the same tree
 * with the tiny fixtures' widths and compares every key and shape with their files, which is how
 * we know the full-size list is right.
 *
 * @module
 */
import { openSafetensors, writeSafetensors } from "../core/io/safetensors.ts";
import type { FileDType } from "../core/io/tensor_source.ts";

/** Widths and depths of an SD checkpoint. */
export interface LdmShapeConfig {
  /** U-Net block_out_channels. */
  unetChannels: number[];
  /** ResNets per down level (up levels have one more). */
  unetResBlocks: number;
  /** Levels with cross-attention (SD: all but the last). */
  unetAttnLevels: number;
  timeEmbed: number;
  context: number;
  /** SD2 uses linear proj_in/proj_out; SD1 1x1 convs. */
  linearProj: boolean;
  text: "clip" | "openclip";
  textWidth: number;
  textLayers: number;
  textMlp: number;
  vaeChannels: number[];
  vaeResBlocks: number;
}

/** SD1.5 (kohya model_util: 320/640/1280/1280, time 1280, context 768; CLIP-L 768x12). */
export const SD1_CONFIG: LdmShapeConfig = {
  unetChannels: [320, 640, 1280, 1280],
  unetResBlocks: 2,
  unetAttnLevels: 3,
  timeEmbed: 1280,
  context: 768,
  linearProj: false,
  text: "clip",
  textWidth: 768,
  textLayers: 12,
  textMlp: 3072,
  vaeChannels: [128, 256, 512, 512],
  vaeResBlocks: 2,
};

/** SD2.x: same U-Net widths, context 1024, linear projections; OpenCLIP ViT-H text 1024x24. */
export const SD2_CONFIG: LdmShapeConfig = {
  ...SD1_CONFIG,
  context: 1024,
  linearProj: true,
  text: "openclip",
  textWidth: 1024,
  textLayers: 24,
  textMlp: 4096,
};

type Entry = { name: string; shape: number[] };

function unetShapes(c: LdmShapeConfig, out: Entry[]): void {
  const p = "model.diffusion_model.";
  const add = (name: string, shape: number[]) => out.push({ name: p + name, shape });
  const norm = (name: string, ch: number) => {
    add(`${name}.weight`, [ch]);
    add(`${name}.bias`, [ch]);
  };
  const lin = (name: string, o: number, i: number, bias = true) => {
    add(`${name}.weight`, [o, i]);
    if (bias) add(`${name}.bias`, [o]);
  };
  const conv = (name: string, o: number, i: number, k: number) => {
    add(`${name}.weight`, [o, i, k, k]);
    add(`${name}.bias`, [o]);
  };
  const res = (name: string, cin: number, cout: number) => {
    norm(`${name}.in_layers.0`, cin);
    conv(`${name}.in_layers.2`, cout, cin, 3);
    lin(`${name}.emb_layers.1`, cout, c.timeEmbed);
    norm(`${name}.out_layers.0`, cout);
    conv(`${name}.out_layers.3`, cout, cout, 3);
    if (cin !== cout) conv(`${name}.skip_connection`, cout, cin, 1);
  };
  const attn = (name: string, ch: number) => {
    norm(`${name}.norm`, ch);
    if (c.linearProj) lin(`${name}.proj_in`, ch, ch);
    else conv(`${name}.proj_in`, ch, ch, 1);
    const t = `${name}.transformer_blocks.0`;
    for (const [a, kv] of [["attn1", ch], ["attn2", c.context]] as const) {
      lin(`${t}.${a}.to_q`, ch, ch, false);
      lin(`${t}.${a}.to_k`, ch, kv, false);
      lin(`${t}.${a}.to_v`, ch, kv, false);
      lin(`${t}.${a}.to_out.0`, ch, ch);
    }
    lin(`${t}.ff.net.0.proj`, ch * 8, ch); // GEGLU: two halves of 4*ch
    lin(`${t}.ff.net.2`, ch, ch * 4);
    for (const n of ["norm1", "norm2", "norm3"]) norm(`${t}.${n}`, ch);
    if (c.linearProj) lin(`${name}.proj_out`, ch, ch);
    else conv(`${name}.proj_out`, ch, ch, 1);
  };
  const chans = c.unetChannels;
  const last = chans.length - 1;
  lin("time_embed.0", c.timeEmbed, chans[0]);
  lin("time_embed.2", c.timeEmbed, c.timeEmbed);
  conv("input_blocks.0.0", chans[0], 4, 3);
  const skips = [chans[0]];
  let ch = chans[0];
  let block = 1;
  for (let l = 0; l <= last; l++) {
    for (let j = 0; j < c.unetResBlocks; j++, block++) {
      res(`input_blocks.${block}.0`, ch, chans[l]);
      ch = chans[l];
      if (l < c.unetAttnLevels) attn(`input_blocks.${block}.1`, ch);
      skips.push(ch);
    }
    if (l < last) {
      conv(`input_blocks.${block++}.0.op`, ch, ch, 3);
      skips.push(ch);
    }
  }
  res("middle_block.0", ch, ch);
  attn("middle_block.1", ch);
  res("middle_block.2", ch, ch);
  block = 0;
  for (let l = last; l >= 0; l--) {
    for (let j = 0; j <= c.unetResBlocks; j++, block++) {
      res(`output_blocks.${block}.0`, ch + skips.pop()!, chans[l]);
      ch = chans[l];
      const hasAttn = l < c.unetAttnLevels;
      if (hasAttn) attn(`output_blocks.${block}.1`, ch);
      if (l > 0 && j === c.unetResBlocks) {
        conv(`output_blocks.${block}.${hasAttn ? 2 : 1}.conv`, ch, ch, 3);
      }
    }
  }
  norm("out.0", ch);
  conv("out.2", 4, ch, 3);
}

function vaeShapes(c: LdmShapeConfig, out: Entry[]): void {
  const p = "first_stage_model.";
  const add = (name: string, shape: number[]) => out.push({ name: p + name, shape });
  const norm = (name: string, ch: number) => {
    add(`${name}.weight`, [ch]);
    add(`${name}.bias`, [ch]);
  };
  const conv = (name: string, o: number, i: number, k: number) => {
    add(`${name}.weight`, [o, i, k, k]);
    add(`${name}.bias`, [o]);
  };
  const res = (name: string, cin: number, cout: number) => {
    norm(`${name}.norm1`, cin);
    conv(`${name}.conv1`, cout, cin, 3);
    norm(`${name}.norm2`, cout);
    conv(`${name}.conv2`, cout, cout, 3);
    if (cin !== cout) conv(`${name}.nin_shortcut`, cout, cin, 1);
  };
  const mid = (name: string, ch: number) => {
    res(`${name}.block_1`, ch, ch);
    norm(`${name}.attn_1.norm`, ch);
    for (const n of ["q", "k", "v", "proj_out"]) conv(`${name}.attn_1.${n}`, ch, ch, 1);
    res(`${name}.block_2`, ch, ch);
  };
  const chans = c.vaeChannels;
  const last = chans.length - 1;
  conv("encoder.conv_in", chans[0], 3, 3);
  let ch = chans[0];
  for (let l = 0; l <= last; l++) {
    for (let j = 0; j < c.vaeResBlocks; j++) {
      res(`encoder.down.${l}.block.${j}`, ch, chans[l]);
      ch = chans[l];
    }
    if (l < last) conv(`encoder.down.${l}.downsample.conv`, ch, ch, 3);
  }
  mid("encoder.mid", ch);
  norm("encoder.norm_out", ch);
  conv("encoder.conv_out", 8, ch, 3);
  conv("quant_conv", 8, 8, 1);
  conv("post_quant_conv", 4, 4, 1);
  conv("decoder.conv_in", ch, 4, 3);
  mid("decoder.mid", ch);
  for (let l = last; l >= 0; l--) {
    for (let j = 0; j <= c.vaeResBlocks; j++) {
      res(`decoder.up.${l}.block.${j}`, ch, chans[l]);
      ch = chans[l];
    }
    if (l > 0) conv(`decoder.up.${l}.upsample.conv`, ch, ch, 3);
  }
  norm("decoder.norm_out", ch);
  conv("decoder.conv_out", 3, ch, 3);
}

function textShapes(c: LdmShapeConfig, out: Entry[]): void {
  const w = c.textWidth;
  const add = (name: string, shape: number[]) => out.push({ name, shape });
  const pair = (name: string, o: number, i?: number) => {
    add(`${name}.weight`, i === undefined ? [o] : [o, i]);
    add(`${name}.bias`, [o]);
  };
  if (c.text === "clip") {
    const p = "cond_stage_model.transformer.text_model.";
    add(`${p}embeddings.token_embedding.weight`, [49408, w]);
    add(`${p}embeddings.position_embedding.weight`, [77, w]);
    add(`${p}embeddings.position_ids`, [1, 77]);
    for (let i = 0; i < c.textLayers; i++) {
      const l = `${p}encoder.layers.${i}.`;
      for (const n of ["q_proj", "k_proj", "v_proj", "out_proj"]) pair(`${l}self_attn.${n}`, w, w);
      pair(`${l}layer_norm1`, w);
      pair(`${l}layer_norm2`, w);
      pair(`${l}mlp.fc1`, c.textMlp, w);
      pair(`${l}mlp.fc2`, w, c.textMlp);
    }
    pair(`${p}final_layer_norm`, w);
  } else {
    const p = "cond_stage_model.model.";
    add(`${p}token_embedding.weight`, [49408, w]);
    add(`${p}positional_embedding`, [77, w]);
    add(`${p}text_projection`, [w, w]);
    add(`${p}logit_scale`, []);
    pair(`${p}ln_final`, w);
    for (let i = 0; i < c.textLayers; i++) {
      const l = `${p}transformer.resblocks.${i}.`;
      add(`${l}attn.in_proj_weight`, [3 * w, w]);
      add(`${l}attn.in_proj_bias`, [3 * w]);
      pair(`${l}attn.out_proj`, w, w);
      pair(`${l}ln_1`, w);
      pair(`${l}ln_2`, w);
      pair(`${l}mlp.c_fc`, c.textMlp, w);
      pair(`${l}mlp.c_proj`, w, c.textMlp);
    }
  }
}

/** Every tensor of an LDM checkpoint with config `c` (names and shapes, in no special order). */
export function ldmCheckpointShapes(c: LdmShapeConfig): Entry[] {
  const out: Entry[] = [];
  unetShapes(c, out);
  vaeShapes(c, out);
  textShapes(c, out);
  for (const n of ["betas", "alphas_cumprod", "alphas_cumprod_prev"]) {
    out.push({ name: n, shape: [1000] });
  }
  return out;
}

/** SD's scaled-linear schedule (0.00085..0.012) and its cumulative products, in f64. */
function schedule(): Record<string, Float32Array> {
  const n = 1000;
  const a = Math.sqrt(0.00085);
  const b = Math.sqrt(0.012);
  const betas = new Float32Array(n);
  const cum = new Float32Array(n);
  const prev = new Float32Array(n);
  let acc = 1;
  for (let i = 0; i < n; i++) {
    const beta = (a + ((b - a) * i) / (n - 1)) ** 2;
    prev[i] = acc;
    acc *= 1 - beta;
    betas[i] = beta;
    cum[i] = acc;
  }
  return { betas, alphas_cumprod: cum, alphas_cumprod_prev: prev };
}

/** Random weights of small magnitude straight as raw bits (no per-element float math). */
function randomBytes(dtype: FileDType, numel: number, seed: number): Uint8Array {
  const size = dtype === "F32" ? 4 : 2;
  const out = new Uint8Array(numel * size);
  const words = new Uint32Array(out.buffer, 0, Math.floor(out.length / 4));
  let x = seed >>> 0 || 1;
  // Random sign and mantissa, exponent fixed near 2^-4: values about +-0.03..0.12, never NaN.
  const [mask, set] = dtype === "F32"
    ? [0x807fffff, 0x3d800000]
    : dtype === "F16"
    ? [0x87ff87ff, 0x28002800]
    : [0x807f807f, 0x3d003d00];
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = (x & mask) | set;
  }
  if (out.length % 4 !== 0) out.set([0x00, 0x2c], out.length - 2); // odd f16/bf16 count
  return out;
}

/** Write the checkpoint; returns its size in bytes. */
export async function makeBigCheckpoint(
  path: string,
  c: LdmShapeConfig,
  dtype: "F16" | "BF16" | "F32",
): Promise<number> {
  const sched = schedule();
  let seed = 12345;
  let total = 0;
  const tensors = ldmCheckpointShapes(c).map(({ name, shape }) => {
    const numel = shape.reduce((p, d) => p * d, 1);
    const s = seed++;
    if (name.endsWith("position_ids")) {
      const ids = new Float32Array(77).map((_, i) => i);
      total += 77 * 8;
      return { name, shape, dtype: "I64" as FileDType, data: ids };
    }
    total += numel * (dtype === "F32" ? 4 : 2);
    const data = name in sched ? sched[name] : () => randomBytes(dtype, numel, s * 2654435761);
    return { name, shape, dtype, data };
  });
  await writeSafetensors(path, tensors, { format: "pt" });
  return total;
}

/** Compare the generator with the tiny fixtures; returns a list of differences. */
export async function checkAgainstFixture(path: string, c: LdmShapeConfig): Promise<string[]> {
  const st = await openSafetensors(path);
  const want = new Map(st.list().map((t) => [t.name, JSON.stringify(t.shape)]));
  st.close();
  const got = new Map(ldmCheckpointShapes(c).map((t) => [t.name, JSON.stringify(t.shape)]));
  const diffs: string[] = [];
  for (const [k, v] of want) {
    if (!got.has(k)) diffs.push(`missing ${k} ${v}`);
    else if (got.get(k) !== v) diffs.push(`${k}: generated ${got.get(k)}, fixture ${v}`);
  }
  for (const k of got.keys()) if (!want.has(k)) diffs.push(`extra ${k}`);
  return diffs;
}

/** The tiny fixtures' widths (see their READMEs). */
export const TINY: Record<"sd1" | "sd2", LdmShapeConfig> = {
  sd1: {
    ...SD1_CONFIG,
    unetChannels: [32, 64, 64, 64],
    timeEmbed: 128,
    context: 32,
    textWidth: 32,
    textLayers: 3,
    textMlp: 128,
    vaeChannels: [32, 64, 64, 64],
  },
  sd2: {
    ...SD2_CONFIG,
    unetChannels: [32, 64, 64, 64],
    timeEmbed: 128,
    context: 32,
    textWidth: 32,
    textLayers: 4,
    textMlp: 128,
    vaeChannels: [32, 64, 64, 64],
  },
};

async function main(args: string[]): Promise<void> {
  if (args.includes("--check")) {
    const root = new URL("../../shared/fixtures/", import.meta.url).pathname;
    for (const v of ["sd1", "sd2"] as const) {
      const diffs = await checkAgainstFixture(`${root}${v}-tiny/model.safetensors`, TINY[v]);
      console.log(
        `${v}-tiny: ${diffs.length === 0 ? "all keys and shapes match" : diffs.join("\n")}`,
      );
      if (diffs.length > 0) Deno.exit(1);
    }
    return;
  }
  const out = args.find((a) => !a.startsWith("--"));
  const di = args.indexOf("--dtype");
  const dtype = (di >= 0 ? args[di + 1] : "f16").toUpperCase();
  if (out === undefined || !["F16", "BF16", "F32"].includes(dtype)) {
    console.error("usage: make_big_checkpoint.ts OUT.safetensors [--sd2] [--dtype f16|bf16|f32]");
    Deno.exit(2);
  }
  const c = args.includes("--sd2") ? SD2_CONFIG : SD1_CONFIG;
  const t0 = performance.now();
  const bytes = await makeBigCheckpoint(out, c, dtype as "F16" | "BF16" | "F32");
  const s = (performance.now() - t0) / 1000;
  const n = ldmCheckpointShapes(c).length;
  console.log(
    `${out}: ${n} tensors, ${(bytes / 1e9).toFixed(2)} GB of ${dtype} data in ${s.toFixed(1)} s ` +
      `(${(bytes / 1e6 / s).toFixed(0)} MB/s)`,
  );
}

if (import.meta.main) await main(Deno.args);
