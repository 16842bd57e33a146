/**
 * Helpers of the SDXL LoRA tool tests: a "tuned" sdxl-tiny written as an SGM single file (the
 * fixture model with a kohya LoRA's deltas added to the weights its modules modify, TE2's q/k/v
 * into their rows of the fused `in_proj_weight`), the SDXL outputs a LoRA changes (both text
 * encoders' penultimate states and the U-Net on the fixture's conditioning), and kohya's module
 * table.
 */
import { loadSdxlCheckpoint } from "../core/io/checkpoint_sdxl.ts";
import { mapSdxlKeys } from "../core/io/keymap_sdxl.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { writeSafetensors } from "../core/io/safetensors_write.ts";
import type { HostTensor } from "../core/io/tensor_source.ts";
import { sdxlLayoutOfCheckpoint } from "../core/lora/extract.ts";
import { loraTargets } from "../core/lora/modules.ts";
import { createNetworkFromWeights } from "../core/lora/network.ts";
import { encodeTe2, loadStableDiffusionXL, type StableDiffusionXL } from "../core/models/mod.ts";
import { initGpu, noGrad, scope, Tensor } from "../gpu/mod.ts";
import { fixture } from "./fixtures.ts";
import { relErr } from "./op_check.ts";
import { delta, readModules } from "./lora_tools_common.ts";

/** kohya's module table of one fixture file (`sdxl-tiny/kohya/lora_modules.json`). */
export interface ModuleSpecJson {
  lora_te1: string[];
  lora_te2: string[];
  lora_unet: string[];
  rank_alpha_down_up_shapes: Record<string, [number, number, number[], number[]]>;
}

/** The table of `name` (lierla, c3lier). */
export async function moduleSpec(path: string, name: string): Promise<ModuleSpecJson> {
  return (JSON.parse(await Deno.readTextFile(path)) as Record<string, ModuleSpecJson>)[name];
}

/**
 * Writes `model` (an SGM .safetensors) with `multiplier` times the deltas of the LoRA file
 * `lora` added to its weights, to `out`; returns the largest |delta| added to a text encoder.
 */
export async function writeTunedSdxl(
  model: string,
  lora: string,
  out: string,
  multiplier = 1,
): Promise<number> {
  const org = await loadSdxlCheckpoint(model, { headsOptional: true });
  const names = org.names().map((n) => ({ name: n, shape: org.info(n).shape }));
  const targets = new Map(
    loraTargets(names, sdxlLayoutOfCheckpoint(org)).map((t) => [t.prefix, t]),
  );
  org.close();
  const st = await openSafetensors(model);
  try {
    const entries = new Map(mapSdxlKeys(st.list(), model).entries.map((e) => [e.name, e]));
    const changed = new Map<string, Float32Array>();
    let teMax = 0;
    for (const [prefix, m] of await readModules(lora)) {
      const t = targets.get(prefix);
      if (t === undefined) throw new Error(`${lora}: module ${prefix} has no layer`);
      const e = entries.get(t.weight)!;
      const data = changed.get(e.key) ?? (await st.readF32(e.key)).data.slice();
      const d = delta(m);
      const at = e.parts === undefined ? 0 : e.part! * d.length;
      for (let i = 0; i < d.length; i++) {
        const x = multiplier * d[i];
        data[at + i] = Math.fround(data[at + i] + x);
        if (t.part === "text_encoder") teMax = Math.max(teMax, Math.abs(x));
      }
      changed.set(e.key, data);
    }
    await writeSafetensors(
      out,
      st.list().map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: t.shape,
        data: changed.get(t.name) ?? (() => st.readRaw(t.name)),
      })),
      st.metadata,
    );
    return teMax;
  } finally {
    st.close();
  }
}

/** Conditioning and inputs from `forward.safetensors`. */
export interface SdxlInputs {
  ids1: Int32Array;
  ids2: Int32Array;
  sample: HostTensor;
  timesteps: number[];
  context: HostTensor;
  y: HostTensor;
}

/** Reads the inputs the outputs below need from sdxl-tiny's `forward.safetensors`. */
export async function sdxlInputs(forward: string): Promise<SdxlInputs> {
  const f = await openSafetensors(forward);
  try {
    const r = (k: string) => f.readF32(k);
    return {
      ids1: Int32Array.from((await r("te1_ids")).data),
      ids2: Int32Array.from((await r("te2_ids")).data),
      sample: await r("unet_sample"),
      timesteps: Array.from((await r("unet_timesteps")).data),
      context: await r("unet_context"),
      y: await r("unet_y"),
    };
  } finally {
    f.close();
  }
}

/**
 * What an SDXL LoRA changes, keyed as kohya's `lora_forward.safetensors` (`te1_penultimate`,
 * `te2_penultimate`, `unet_out_fixed_cond`): the model as it is now (with any network applied).
 */
export async function sdxlOutputs(
  sd: StableDiffusionXL,
  x: SdxlInputs,
): Promise<Record<string, Float32Array>> {
  const up = (h: HostTensor) => Tensor.fromArray(h.data, h.shape);
  const out = noGrad(() =>
    scope(() => {
      const te1 = sd.textEncoder;
      const [te1Pen] = te1.hiddenStates(x.ids1, [te1.config.numLayers - 1]);
      const t2 = encodeTe2(sd.textEncoder2, x.ids2);
      const fixed = sd.unet.forward(up(x.sample), x.timesteps, up(x.context), up(x.y));
      return {
        te1_penultimate: te1Pen,
        te2_penultimate: t2.penultimate,
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

/**
 * sdxl-tiny with the LoRA file `lora` applied at 0.7: the relative errors of {@link sdxlOutputs}
 * against kohya's outputs of its fixture file `ref` (lierla, c3lier) at 0.7.
 */
export async function appliedErrors(lora: string, ref: string): Promise<Record<string, number>> {
  await initGpu();
  const sd = await loadStableDiffusionXL(fixture("sdxl-tiny/model.safetensors")!);
  const refs = await openSafetensors(fixture("sdxl-tiny/kohya/lora_forward.safetensors")!);
  try {
    const net = await createNetworkFromWeights(0.7, lora, sd);
    net.applyTo(sd);
    const got = await sdxlOutputs(sd, await sdxlInputs(fixture("sdxl-tiny/forward.safetensors")!));
    net.dispose();
    const errs: Record<string, number> = {};
    for (const [k, v] of Object.entries(got)) {
      errs[k] = relErr(v, (await refs.readF32(`${ref}_${k}`)).data);
    }
    return errs;
  } finally {
    refs.close();
    sd.dispose();
  }
}

/** `name value, ...` of measured errors, for the test log. */
export function formatErrors(e: Record<string, number>): string {
  return Object.entries(e).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ");
}
