/**
 * The scalars kohya's train_network sends to its trackers (`generate_step_logs`, the epoch log):
 * per optimizer step `loss/current`, `loss/average`, with `--scale_weight_norms`
 * `max_norm/keys_scaled`, `max_norm/max_key_norm` and `norm/avg_key_norm`, then `lr/<group>` for
 * each optimizer group of kohya's `prepare_optimizer_params`; after each epoch
 * `loss/epoch_average` at the epoch number.
 *
 * kohya's groups are not the optimizer groups here (those merge parameters of equal lr), so they
 * are rebuilt from the learning rates: networks.lora names them `textencoder`, `unet` or
 * `unet_block<i>` (per block with block lr weights), each followed by a ` plus` group for LoRA+;
 * networks.dylora names none, and kohya's fallback naming applies (`group<i>` past two groups,
 * else every group is `unet`, the later overwriting the earlier).
 *
 * kohya logs the scheduler's lr after its step, that is the lr of the next step.
 *
 * @module
 */
import type { LoraModuleSpec } from "../lora/modules.ts";
import { networkOptions } from "../lora/network_args.ts";
import type { UnetKeyLayout } from "../io/keymap_unet.ts";
import type { NetworkPlan, OptimizerPlan } from "../kohya/plan_types.ts";

/** One of kohya's optimizer groups: its name (null for networks.dylora) and base lr. */
export interface KohyaLrGroup {
  description: string | null;
  lr: number;
}

/** kohya's optimizer groups, in its order, for a network of `modules`. */
export function kohyaLrGroups(
  modules: readonly Pick<LoraModuleSpec, "part" | "block">[],
  network: Pick<NetworkPlan, "module" | "args">,
  rates: Pick<OptimizerPlan, "learningRate" | "unetLr" | "textEncoderLr">,
  sdxl: UnetKeyLayout | null = null,
): KohyaLrGroup[] {
  const module = network.module;
  const parsed = network.args;
  const { blockLrWeight } = networkOptions(parsed, { module, sdxl });
  const named = module === "networks.lora";
  const groups: KohyaLrGroup[] = [];
  // kohya's assemble_params: the lora group, then the LoRA+ group; an lr of 0 drops a group.
  const add = (name: string, lr: number, ratio: number | null) => {
    if (lr !== 0) groups.push({ description: named ? name : null, lr });
    if (ratio !== null && lr * ratio !== 0) {
      groups.push({ description: named ? `${name} plus` : null, lr: lr * ratio });
    }
  };
  // Python `a or b`: a ratio of 0 falls through to the global one.
  const teRatio = parsed.loraplusTextEncoderLrRatio || parsed.loraplusLrRatio || null;
  const unetRatio = parsed.loraplusUnetLrRatio || parsed.loraplusLrRatio || null;
  const te = modules.filter((m) => m.part === "text_encoder");
  const unet = modules.filter((m) => m.part !== "text_encoder");
  if (te.length > 0) add("textencoder", rates.textEncoderLr ?? rates.learningRate, teRatio);
  if (unet.length > 0) {
    const base = rates.unetLr ?? rates.learningRate;
    if (blockLrWeight === null) add("unet", base, unetRatio);
    else {
      const blocks = [...new Set(unet.map((m) => m.block))];
      for (const b of blocks) add(`unet_block${b}`, base * blockLrWeight[b], unetRatio);
    }
  }
  return groups;
}

/** What one step's scalars are made of. */
export interface StepLogInput {
  loss: number;
  averageLoss: number;
  /** The scheduler's multiplier after this step. */
  lrScale: number;
  /** `--network_train_unet_only` (kohya's fallback names count from it). */
  unetOnly: boolean;
  /** `--scale_weight_norms` figures of this step. */
  norms?: { keysScaled: number; meanNorm: number; maxNorm: number };
}

/** kohya's `generate_step_logs`, tag by tag in its order. */
export function stepScalars(
  groups: readonly KohyaLrGroup[],
  s: StepLogInput,
): Record<string, number> {
  const logs: Record<string, number> = {
    "loss/current": s.loss,
    "loss/average": s.averageLoss,
  };
  if (s.norms) {
    logs["max_norm/keys_scaled"] = s.norms.keysScaled;
    logs["max_norm/max_key_norm"] = s.norms.maxNorm;
    logs["norm/avg_key_norm"] = s.norms.meanNorm;
  }
  groups.forEach((g, i) => {
    let name = g.description;
    if (name === null) {
      // kohya's own fallback, sign slip included: the index is shifted up when the text encoder
      // is trained, so "textencoder" never comes out.
      const idx = i - (s.unetOnly ? 0 : -1);
      name = idx === -1 ? "textencoder" : groups.length > 2 ? `group${idx}` : "unet";
    }
    logs[`lr/${name}`] = g.lr * s.lrScale;
  });
  return logs;
}

/** The scalar kohya logs after each epoch, at the epoch number (1-based). */
export function epochScalars(averageLoss: number): Record<string, number> {
  return { "loss/epoch_average": averageLoss };
}
