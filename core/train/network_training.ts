/**
 * The LoRA network as train_network sets it up: created from the `--network_*` flags (or with
 * `--dim_from_weights`, from a file), `--network_weights` loaded into it (kohya's
 * `load_weights`, not strict: unmatched keys are reported), `--full_fp16` factors, the optimizer's
 * parameter groups with the learning rate kohya's `prepare_optimizer_params` gives each
 * parameter (`--unet_lr`, `--text_encoder_lr`, block lr weights, LoRA+), kohya's max-norm
 * regularization (`--scale_weight_norms`), and gradient checkpointing of the U-Net's ResNet and
 * transformer blocks.
 *
 * @module
 */
import { cast, checkpoint, noGrad, type ParamGroup, rt, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { parameterLearningRates } from "../lora/block_lr.ts";
import { openLoraFile } from "../lora/lora_file.ts";
import type { LoraModule } from "../lora/lora_module.ts";
import { makeRng } from "../lora/lora_module.ts";
import { type NetworkArgs, networkOptions } from "../lora/network_args.ts";
import {
  createNetwork,
  createNetworkFromWeights,
  type LoraModel,
  type LoraNetwork,
} from "../lora/network.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import type { NetworkPlan, OptimizerPlan } from "../kohya/plan_types.ts";
import { mixSeed, STREAM } from "./train_rng.ts";

type Model = LoraModel;

/** Overwrite a tensor's contents with host data (same shape). */
export function overwriteTensor(t: Tensor, data: Float32Array): void {
  const src = Tensor.fromArray(data, t.shape, t.dtype);
  rt().copy(src.buffer, 0, t.buffer, 0, src.storage.bytes);
  src.dispose();
}

/** Create the network to train (and load its starting weights into it). */
export async function buildNetwork(
  sd: Model,
  plan: NetworkPlan,
  seed: number,
  note: (message: string) => void,
): Promise<LoraNetwork> {
  if (plan.dimFromWeights) {
    if (plan.weights === null) {
      throw new LorakitError("--dim_from_weights: requires --network_weights");
    }
    const net = await createNetworkFromWeights(1, plan.weights, sd);
    for (const m of net.modules) {
      for (const p of m.parameters()) p.requiresGrad = true;
      m.dropout = {
        dropout: plan.dropout ?? undefined,
        rankDropout: plan.args.rankDropout,
        moduleDropout: plan.args.moduleDropout,
      };
    }
    note(`network dims and alphas taken from ${plan.weights}`);
    return net;
  }
  const net = createNetwork(sd, {
    module: plan.module,
    dim: plan.dim,
    alpha: plan.alpha,
    args: plan.args,
    dropout: plan.dropout ?? undefined,
    unetOnly: plan.unetOnly,
    textEncoderOnly: plan.textEncoderOnly,
    seed: mixSeed(seed, STREAM.network, 0xffff),
  });
  if (plan.weights !== null) {
    try {
      await loadWeightsInto(net, plan.weights, note);
    } catch (e) {
      net.dispose();
      throw e;
    }
  }
  return net;
}

/** kohya's `network.load_weights(file)` (strict=False): matching modules take the file's values. */
export async function loadWeightsInto(
  net: LoraNetwork,
  path: string,
  note: (message: string) => void,
): Promise<void> {
  const file = await openLoraFile(path);
  try {
    const mine = new Map(net.modules.map((m) => [m.spec.prefix, m]));
    let loaded = 0;
    const unexpected: string[] = [];
    for (const fm of file.modules) {
      const m = mine.get(fm.prefix);
      if (!m) {
        unexpected.push(fm.prefix);
        continue;
      }
      if (fm.rank !== m.spec.rank) {
        throw new LorakitError(
          `--network_weights ${path}: ${fm.prefix}: rank ${fm.rank} in the file, the network ` +
            `has ${m.spec.rank}; set --network_dim to match or use --dim_from_weights`,
        );
      }
      const { down, up, alpha } = await file.readModule(fm.prefix);
      writeFactors(m, down.data, up.data);
      m.spec.alpha = alpha;
      loaded++;
    }
    const missing = net.modules.length - loaded;
    note(
      `load network weights from ${path}: ${loaded} modules loaded` +
        (missing > 0 ? `, ${missing} not in the file (kept initialised)` : "") +
        (unexpected.length > 0 ? `, ${unexpected.length} in the file not in the network` : ""),
    );
  } finally {
    file.close();
  }
}

/** Write full down [r, ...] and up [out, r, ...] factors into a module (split into chunks). */
function writeFactors(m: LoraModule, down: Float32Array, up: Float32Array): void {
  const r = m.spec.rank;
  const per = r / m.downs.length;
  const inner = down.length / r;
  const out = up.length / r;
  m.downs.forEach((t, c) => overwriteTensor(t, down.slice(c * per * inner, (c + 1) * per * inner)));
  m.ups.forEach((t, c) => {
    const part = new Float32Array(out * per);
    for (let o = 0; o < out; o++) {
      for (let k = 0; k < per; k++) part[o * per + k] = up[o * r + c * per + k];
    }
    overwriteTensor(t, part);
  });
}

/** `--full_fp16`: keep the LoRA factors themselves in f16. */
export function castNetworkToF16(net: LoraNetwork): void {
  for (const m of net.modules) {
    for (const list of [m.downs, m.ups]) {
      list.forEach((t, i) => {
        const h = noGrad(() => cast(t, "f16")).keep();
        h.requiresGrad = t.requiresGrad;
        t.dispose();
        list[i] = h;
      });
    }
  }
}

/** The optimizer's groups and every parameter's name (`<prefix>.lora_down.weight`, ...). */
export interface ParameterGroups {
  groups: ParamGroup[];
  names: Map<Tensor, string>;
  /** The lr of each parameter name (null: not trained), as parameterLearningRates gives it. */
  lrs: Map<string, number | null>;
}

/** The learning rates a network's parameters are trained with. */
export type LearningRates = Pick<OptimizerPlan, "learningRate" | "unetLr" | "textEncoderLr">;

/**
 * kohya's `prepare_optimizer_params`: each parameter's lr from `parameterLearningRates` (block lr
 * weights and LoRA+ ratios from the network args), grouped by lr in parameter order; parameters
 * whose lr is 0 or unset are frozen and left out.
 */
export function parameterGroups(
  net: LoraNetwork,
  networkArgs: NetworkArgs,
  rates: LearningRates,
): ParameterGroups {
  const { blockLrWeight } = networkOptions(networkArgs, {
    module: net.moduleName,
    sdxl: net.sdxl,
  });
  const lrs = parameterLearningRates(net.modules.map((m) => m.spec), {
    textEncoderLr: rates.textEncoderLr,
    unetLr: rates.unetLr,
    learningRate: rates.learningRate,
    blockLrWeight,
    loraplusLrRatio: networkArgs.loraplusLrRatio ?? null,
    loraplusUnetLrRatio: networkArgs.loraplusUnetLrRatio ?? null,
    loraplusTextEncoderLrRatio: networkArgs.loraplusTextEncoderLrRatio ?? null,
  });
  const names = new Map<Tensor, string>();
  const byLr = new Map<number, Tensor[]>();
  for (const m of net.modules) {
    const both: [Tensor[], string][] = [[m.downs, "lora_down"], [m.ups, "lora_up"]];
    for (const [list, kind] of both) {
      const name = `${m.spec.prefix}.${kind}.weight`;
      for (const p of list) {
        names.set(p, name);
        const lr = lrs.get(name) ?? null;
        if (lr === null) {
          p.requiresGrad = false;
          continue;
        }
        byLr.set(lr, [...(byLr.get(lr) ?? []), p]);
      }
    }
  }
  const groups = [...byLr].map(([lr, params]) => ({ lr, params }));
  if (groups.length === 0) {
    throw new LorakitError(
      "nothing to train: every learning rate is 0 (check --learning_rate, --unet_lr, " +
        "--text_encoder_lr and the block lr weights)",
    );
  }
  return { groups, names, lrs };
}

/** Reseed every module's dropout / DyLoRA generator for a step (so resumed runs match). */
export function reseedNetwork(net: LoraNetwork, seed: number, step: number): void {
  net.modules.forEach((m, i) => (m.rng = makeRng(mixSeed(seed, STREAM.network, step, i))));
}

/**
 * kohya's `apply_max_norm_regularization`: for each module, the norm of `up @ down * scale`;
 * above `maxNorm` both factors are scaled by the square root of `maxNorm / norm`. Returns
 * kohya's logged figures (keys scaled, mean and max norm after scaling).
 */
export async function applyMaxNorm(
  net: LoraNetwork,
  maxNorm: number,
): Promise<{ keysScaled: number; meanNorm: number; maxNorm: number }> {
  const norms: number[] = [];
  let keysScaled = 0;
  for (const m of net.modules) {
    if (m.downs.length !== 1) {
      throw new LorakitError("--scale_weight_norms: not available for networks.dylora");
    }
    const [d, u] = await Promise.all([m.downs[0].toArray(), m.ups[0].toArray()]);
    const r = m.spec.rank;
    const inner = d.length / r, out = u.length / r;
    // ||U D||_F^2 = sum_ij (U^T U)_ij (D D^T)_ij.
    let sq = 0;
    for (let i = 0; i < r; i++) {
      for (let j = 0; j < r; j++) {
        let uu = 0, dd = 0;
        for (let o = 0; o < out; o++) uu += u[o * r + i] * u[o * r + j];
        for (let k = 0; k < inner; k++) dd += d[i * inner + k] * d[j * inner + k];
        sq += uu * dd;
      }
    }
    const raw = Math.sqrt(Math.max(sq, 0)) * m.scale;
    const norm = Math.max(raw, maxNorm / 2);
    const ratio = Math.min(norm, maxNorm) / norm;
    if (ratio !== 1) {
      keysScaled++;
      const s = Math.sqrt(ratio);
      overwriteTensor(m.downs[0], d.map((v) => v * s));
      overwriteTensor(m.ups[0], u.map((v) => v * s));
    }
    norms.push(raw * ratio);
  }
  const mean = norms.reduce((a, b) => a + b, 0) / Math.max(1, norms.length);
  return { keysScaled, meanNorm: mean, maxNorm: Math.max(0, ...norms) };
}

type Fwd = (...a: Tensor[]) => Tensor;

/**
 * `--gradient_checkpointing`: every ResNet and transformer block of the U-Net recomputes its
 * forward during backward instead of keeping its activations (what diffusers' checkpointing
 * wraps). Returns a function that undoes it.
 */
export function enableGradientCheckpointing(unet: StableDiffusion["unet"]): () => void {
  const undo: (() => void)[] = [];
  const wrap = (obj: { forward: Fwd }) => {
    const org = obj.forward;
    const wrapped: Fwd = (...xs) => checkpoint((...ys) => org.apply(obj, ys), ...xs);
    obj.forward = wrapped;
    undo.push(() => (obj.forward = org));
  };
  const blocks = [...unet.downBlocks, unet.midBlock, ...unet.upBlocks];
  for (const b of blocks) {
    for (const r of b.resnets) wrap(r as unknown as { forward: Fwd });
    for (const a of b.attentions) wrap(a as unknown as { forward: Fwd });
  }
  return () => undo.forEach((f) => f());
}
