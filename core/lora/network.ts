/**
 * A LoRA network over a loaded Stable Diffusion model, as kohya's `LoRANetwork`: build it from
 * options (`createNetwork`) or a file (`createNetworkFromWeights`), hook it into the model's
 * layers (`applyTo`), change its strength (`setMultiplier`), fold it into the weights
 * (`mergeTo`), and save it in kohya's format (`save`). Several networks can be applied at once;
 * each wraps whatever forward the layer had.
 *
 * An SDXL model (one with `textEncoder2`, e.g. from `loadStableDiffusionXL`) gets kohya's SDXL
 * network (`is_sdxl`): `lora_te1_*`, `lora_te2_*` and SGM-named `lora_unet_*` modules and the
 * 23-block map (see modules.ts and blocks.ts).
 *
 * @module
 */
import { addScaled, cast, noGrad, scope, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { UnetKeyLayout } from "../io/keymap_unet.ts";
import type { LayerModule } from "../models/weights.ts";
import { bindLoraFile, openLoraFile, saveLoraFile } from "./lora_file.ts";
import { saveLoraCheckpoint } from "./lora_file_ckpt.ts";
import { downShape, type DropoutOptions, LoraModule, makeRng, upShape } from "./lora_module.ts";
import { buildLoraModules, type LoraModuleSpec, type NetworkModuleName } from "./modules.ts";
import { type NetworkArgs, networkOptions } from "./network_args.ts";
import {
  fileTargets,
  type LoraModel,
  modelLayers,
  sdxlLayoutOf,
  storeOf,
} from "./network_model.ts";

export { type LoraModel, sdxlLayoutOf } from "./network_model.ts";

type Model = LoraModel;

/** What a new network is made of. */
export interface NetworkOptions {
  /** kohya's network module (default networks.lora). */
  module?: NetworkModuleName;
  /** Rank (default 4) and alpha (default 1). */
  dim?: number;
  alpha?: number;
  /** The network's args (conv dims, block dims, DyLoRA unit, dropouts, ...). */
  args?: NetworkArgs;
  /** Neuron dropout. */
  dropout?: number;
  /** Only the U-Net's or only the text encoder's layers. */
  unetOnly?: boolean;
  textEncoderOnly?: boolean;
  /** Initial multiplier (default 1). */
  multiplier?: number;
  /** Seed of the factor initialisation and of the dropout / DyLoRA draws. */
  seed?: number;
}

/**
 * One hook per layer holds every LoRA module applied to it, so networks can be applied and
 * removed in any order: the layer's forward is `org(x) + sum of deltas` while any is active.
 */
type LayerForward = (x: Tensor, residual?: Tensor | null) => Tensor;
const hooks = new WeakMap<LayerModule, { org: LayerForward; mods: Set<LoraModule> }>();

function hookOf(layer: LayerModule): Set<LoraModule> {
  let h = hooks.get(layer);
  if (!h) {
    const org = layer.forward;
    const mods = new Set<LoraModule>();
    h = { org, mods };
    hooks.set(layer, h);
    layer.forward = (x: Tensor, residual: Tensor | null = null): Tensor => {
      let y = org.call(layer, x, residual);
      for (const m of mods) y = m.addTo(y, x);
      return y;
    };
  }
  return h.mods;
}

function unhook(layer: LayerModule, mod: LoraModule): void {
  const h = hooks.get(layer);
  if (!h) return;
  h.mods.delete(mod);
  if (h.mods.size === 0) {
    layer.forward = h.org;
    hooks.delete(layer);
  }
}

/** kaiming_uniform_(a=sqrt(5)) bound for a fan-in, as PyTorch initialises lora_down. */
function kaimingBound(fanIn: number): number {
  return 1 / Math.sqrt(fanIn);
}

/** A set of LoRA modules bound to layers of one model. */
export class LoraNetwork {
  readonly modules: LoraModule[];
  readonly moduleName: NetworkModuleName;
  /** kohya's `ss_network_args` raw strings. */
  readonly networkArgs: Record<string, string>;
  /** The SDXL U-Net key layout for an SDXL network (pass it to `networkOptions`), else null. */
  readonly sdxl: UnetKeyLayout | null;
  #targets: Map<LoraModule, LayerModule>;
  #model: Model;
  #applied = new Set<LoraModule>();
  #multiplier = 1;

  constructor(
    model: Model,
    modules: LoraModule[],
    targets: Map<LoraModule, LayerModule>,
    moduleName: NetworkModuleName,
    networkArgs: Record<string, string>,
  ) {
    this.#model = model;
    this.modules = modules;
    this.#targets = targets;
    this.moduleName = moduleName;
    this.networkArgs = networkArgs;
    this.sdxl = sdxlLayoutOf(model);
  }

  get multiplier(): number {
    return this.#multiplier;
  }

  /** Change the strength of every module (takes effect on the next forward). */
  setMultiplier(m: number): void {
    this.#multiplier = m;
    for (const mod of this.modules) mod.multiplier = m;
  }

  /** Training mode: dropouts and DyLoRA rank sampling on. */
  setTraining(on: boolean): void {
    for (const mod of this.modules) mod.training = on;
  }

  /** Hook every module into its layer: forward becomes `org(x) + sum of active deltas`. */
  applyTo(_sd?: Model): void {
    for (const mod of this.modules) {
      if (this.#applied.has(mod)) continue;
      const layer = this.#targets.get(mod)!;
      hookOf(layer).add(mod);
      this.#applied.add(mod);
    }
  }

  /** Remove this network's modules from their layers (other networks stay applied). */
  restore(): void {
    for (const mod of this.#applied) unhook(this.#targets.get(mod)!, mod);
    this.#applied.clear();
  }

  /**
   * Fold every module into its layer's weight (`W += multiplier * scale * up @ down`) on the
   * GPU, then unhook: the model computes the same outputs without the network.
   */
  mergeTo(_sd?: Model): void {
    this.restore();
    noGrad(() => {
      for (const mod of this.modules) {
        const layer = this.#targets.get(mod)!;
        const store = storeOf(this.#model, mod.spec.weight);
        const name = `${layer.name}.weight`;
        const w = layer.weight;
        const merged = scope(() => {
          let delta = mod.weightDelta(w.shape);
          if (delta.dtype !== w.dtype) delta = cast(delta, w.dtype);
          return addScaled(w, delta, this.#multiplier * mod.scale);
        });
        store.set(name, merged);
      }
    });
  }

  /** Every trainable tensor. */
  parameters(): Tensor[] {
    return this.modules.flatMap((m) => m.parameters());
  }

  /**
   * Save in kohya's format: `<prefix>.lora_down.weight`, `.lora_up.weight`, `.alpha`, with
   * `metadata` in a `.safetensors` file; a `.ckpt`/`.pt` path gets a `torch.save` checkpoint of
   * the same tensors, without metadata (as kohya). Returns the metadata written (`{}` for ckpt).
   */
  async save(
    path: string,
    metadata: Record<string, string> = {},
    precision: "float" | "fp16" | "bf16" = "fp16",
  ): Promise<Record<string, string>> {
    const ckpt = path.endsWith(".ckpt") || path.endsWith(".pt");
    if (!ckpt && !path.endsWith(".safetensors")) {
      throw new LorakitError(`${path}: expected a .safetensors, .ckpt or .pt output file`);
    }
    // Every factor in one read-back (one wait, not two per module).
    const factors = this.modules.map((m) => m.factors());
    let host: Float32Array[];
    try {
      host = await Tensor.readAll(factors.flatMap((f) => [f.down, f.up]));
    } finally {
      // DyLoRA's factors are concatenations made for this read.
      this.modules.forEach((m, i) => {
        if (m.downs.length > 1) {
          factors[i].down.dispose();
          factors[i].up.dispose();
        }
      });
    }
    const mods = this.modules.map((m, i) => ({
      prefix: m.spec.prefix,
      down: { shape: downShape(m.spec), data: host[2 * i] },
      up: { shape: upShape(m.spec), data: host[2 * i + 1] },
      alpha: m.spec.alpha,
    }));
    if (ckpt) {
      await saveLoraCheckpoint(path, mods, { precision });
      return {};
    }
    return await saveLoraFile(path, mods, { precision, metadata });
  }

  dispose(): void {
    this.restore();
    for (const m of this.modules) m.dispose();
  }
}

/** Build a new network with kohya's initialisation (down: kaiming uniform, up: zeros). */
export function createNetwork(sd: Model, options: NetworkOptions = {}): LoraNetwork {
  const moduleName = options.module ?? "networks.lora";
  const args: NetworkArgs = options.args ?? { raw: {}, ignored: [] };
  const { modules: listOptions } = networkOptions(args, {
    sdxl: sdxlLayoutOf(sd),
    module: moduleName,
    networkDim: options.dim,
    networkAlpha: options.alpha,
    trainUnetOnly: options.unetOnly,
    trainTextEncoderOnly: options.textEncoderOnly,
  });
  const { byWeight, weights } = modelLayers(sd);
  const specs = buildLoraModules(weights, listOptions);
  const rng = makeRng(options.seed ?? 0);
  const unit = moduleName === "networks.dylora" ? (args.unit ?? 1) : 0;
  const dropout: DropoutOptions = {
    dropout: options.dropout ?? args.dropout,
    rankDropout: args.rankDropout,
    moduleDropout: args.moduleDropout,
  };
  const modules: LoraModule[] = [];
  const targets = new Map<LoraModule, LayerModule>();
  for (const spec of specs) {
    const layer = byWeight.get(spec.weight)!;
    const chunks = unit > 0 ? spec.rank / unit : 1;
    if (unit > 0 && spec.rank % unit !== 0) {
      throw new LorakitError(
        `--network_args unit=${unit}: expected a divisor of the rank, found rank ${spec.rank} ` +
          `for ${spec.prefix}`,
      );
    }
    const per = spec.rank / chunks;
    const fanIn = downShape(spec).slice(1).reduce((a, b) => a * b, 1);
    const bound = kaimingBound(fanIn);
    const downs: Tensor[] = [], ups: Tensor[] = [];
    for (let c = 0; c < chunks; c++) {
      const ds = downShape(spec, per), us = upShape(spec, per);
      const n = ds.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = (2 * rng() - 1) * bound;
      downs.push(Tensor.fromArray(data, ds).keep().param());
      ups.push(Tensor.zeros(us).keep().param());
    }
    const mod = new LoraModule(spec, downs, ups, unit);
    mod.dropout = dropout;
    mod.rng = makeRng((options.seed ?? 0) + modules.length + 1);
    modules.push(mod);
    targets.set(mod, layer);
  }
  const net = new LoraNetwork(sd, modules, targets, moduleName, args.raw);
  net.setMultiplier(options.multiplier ?? 1);
  return net;
}

/**
 * Load a kohya LoRA file for a model. Every key must match a layer of the model (a LoRA for
 * SD 2.x on an SD 1.x model is a clear error); alpha defaults to the rank when absent. On SDXL,
 * U-Net modules named the diffusers way bind to the same layers and take kohya's SGM names.
 */
export async function createNetworkFromWeights(
  multiplier: number,
  weightsPath: string,
  sd: Model,
): Promise<LoraNetwork> {
  const file = await openLoraFile(weightsPath);
  try {
    const { byWeight, weights } = modelLayers(sd);
    const known = fileTargets(weights, sdxlLayoutOf(sd));
    const bound = bindLoraFile(file, known.targets);
    const seen = new Map<string, string>();
    const modules: LoraModule[] = [];
    const targets = new Map<LoraModule, LayerModule>();
    for (const m of file.modules) {
      const target = known.byWeight.get(bound.get(m.prefix)!.weight)!;
      const twice = seen.get(target.weight);
      if (twice !== undefined) {
        throw new LorakitError(
          `${file.path}: modules '${twice}' and '${m.prefix}' both modify model layer ` +
            `'${target.weight}' (kohya names '${target.prefix}'); expected one`,
        );
      }
      seen.set(target.weight, m.prefix);
      const spec: LoraModuleSpec = { ...target, rank: m.rank, alpha: m.alpha };
      const { down, up } = await file.readModule(m.prefix);
      const mod = new LoraModule(
        spec,
        [Tensor.fromArray(down.data, downShape(spec)).keep()],
        [Tensor.fromArray(up.data, upShape(spec)).keep()],
      );
      modules.push(mod);
      targets.set(mod, byWeight.get(target.weight)!);
    }
    const net = new LoraNetwork(sd, modules, targets, "networks.lora", {});
    net.setMultiplier(multiplier);
    return net;
  } finally {
    file.close();
  }
}
