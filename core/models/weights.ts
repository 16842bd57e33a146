/**
 * Model parameters on the GPU and the small modules that use them. `ModelWeights` holds one
 * part's tensors (`unet.*`, `vae.*` or `text_encoder.*`, internal naming) in f32 or f16; every
 * Linear and Conv2d of a model is a `LinearModule`/`Conv2dModule` that reads its weight from
 * the store by name, so LoRA can find each one by its internal name (kohya's key is that name
 * with `_` for `.`), wrap its `forward`, or replace its weight in the store.
 *
 * @module
 */
import {
  cast,
  conv2d,
  type ConvPadding,
  type DType,
  groupNorm,
  layerNorm,
  linear,
  Tensor,
} from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import type { LoadedCheckpoint } from "../io/checkpoint.ts";
import type { ExpectedTensor } from "../model_config/keys.ts";

/** The parts of a Stable Diffusion checkpoint, as internal-name prefixes (SDXL adds `text_encoder_2`). */
export type ModelPart = "unet" | "vae" | "text_encoder" | "text_encoder_2";

/** One part's parameters on the GPU, keyed by internal name. */
export class ModelWeights {
  readonly #tensors: Map<string, Tensor>;

  /** Wrap uploaded tensors; `where` (a path) names the source in errors. */
  constructor(
    readonly part: ModelPart,
    readonly dtype: DType,
    tensors: Map<string, Tensor>,
    readonly where: string,
  ) {
    this.#tensors = tensors;
  }

  /** The tensor `name`; a LorakitError naming the key when it is missing. */
  get(name: string): Tensor {
    const t = this.#tensors.get(name);
    if (t === undefined) {
      throw new LorakitError(
        `${this.where}: missing tensor '${name}' (internal name) for the ${this.part} ` +
          `(${this.#tensors.size} ${this.part} tensors loaded)`,
      );
    }
    return t;
  }

  /** The tensor `name`, or null when absent (optional biases and shortcuts). */
  maybe(name: string): Tensor | null {
    return this.#tensors.get(name) ?? null;
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  /** Internal names, optionally only those under `prefix` (a module name). */
  names(prefix?: string): string[] {
    const all = [...this.#tensors.keys()];
    if (prefix === undefined) return all;
    const p = prefix.endsWith(".") ? prefix : `${prefix}.`;
    return all.filter((n) => n.startsWith(p));
  }

  /** The parameters of one module, keyed by the name relative to `prefix` (`weight`, `bias`). */
  params(prefix: string): Record<string, Tensor> {
    const p = prefix.endsWith(".") ? prefix : `${prefix}.`;
    const out: Record<string, Tensor> = {};
    for (const n of this.names(p)) out[n.slice(p.length)] = this.#tensors.get(n)!;
    return out;
  }

  /** Replace a parameter (same shape and dtype); the old tensor is disposed. */
  set(name: string, value: Tensor): void {
    const old = this.get(name);
    if (old.shape.join() !== value.shape.join() || old.dtype !== value.dtype) {
      throw new LorakitError(
        `${name}: replacement ${value.dtype}[${value.shape}] does not match ${old.dtype}[${old.shape}]`,
      );
    }
    if (old !== value) old.dispose();
    this.#tensors.set(name, value.keep());
  }

  /** Total bytes of the parameters. */
  get bytes(): number {
    let n = 0;
    for (const t of this.#tensors.values()) n += t.size * (t.dtype === "f32" ? 4 : 2);
    return n;
  }

  /** Free every parameter. */
  dispose(): void {
    for (const t of this.#tensors.values()) t.dispose();
    this.#tensors.clear();
  }
}

/** Options of {@link uploadWeights}. */
export interface UploadOptions {
  /** Storage dtype on the GPU (default f32); f16 is converted on the GPU after upload. */
  dtype?: DType;
}

/** Upload the f32 host data of one tensor as `dtype`. */
function upload(data: Float32Array, shape: number[], dtype: DType): Tensor {
  // Model weights are frozen: ops may cache what they derive from them (packed conv weights).
  const t = Tensor.fromArray(data, shape, "f32");
  if (dtype === "f32") return t.keep().markConstant();
  const h = cast(t, dtype).keep().markConstant();
  t.dispose();
  return h;
}

/** Upload every tensor of `part` from a checkpoint (one tensor in host memory at a time). */
export async function uploadWeights(
  ckpt: LoadedCheckpoint<unknown>,
  part: ModelPart,
  opts: UploadOptions = {},
): Promise<ModelWeights> {
  const dtype = opts.dtype ?? "f32";
  const prefix = `${part}.`;
  const names = ckpt.names().filter((n) => n.startsWith(prefix));
  if (names.length === 0) {
    throw new LorakitError(`${ckpt.path}: no ${part} tensors (internal names '${prefix}*')`);
  }
  const map = new Map<string, Tensor>();
  try {
    for (const name of names) {
      const host = await ckpt.readF32(name);
      map.set(name, upload(host.data, host.shape, dtype));
    }
  } catch (e) {
    for (const t of map.values()) t.dispose();
    throw e;
  }
  return new ModelWeights(part, dtype, map, ckpt.path);
}

/**
 * Random parameters for the tensors of `part` in `specs` (from `expectedTensors(config)`), for
 * benchmarks and tests that need the full-size topology without a file: weights uniform with
 * std 1/sqrt(fan_in), norm weights 1, biases 0.
 */
export function randomWeights(
  specs: readonly ExpectedTensor[],
  part: ModelPart,
  opts: UploadOptions & { seed?: number } = {},
): ModelWeights {
  const dtype = opts.dtype ?? "f32";
  let s = (opts.seed ?? 1) >>> 0;
  const next = (): number => {
    // xorshift32: fast enough for hundreds of millions of values.
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
  const map = new Map<string, Tensor>();
  for (const { name, shape } of specs) {
    if (!name.startsWith(`${part}.`)) continue;
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1) {
      const isNormWeight = /norm[^.]*\.weight$|layer_norm\d?\.weight$/.test(name);
      if (isNormWeight) data.fill(1);
    } else {
      const fanIn = n / shape[0];
      const a = Math.sqrt(3 / fanIn); // uniform(-a, a) has std 1/sqrt(fan_in)
      for (let i = 0; i < n; i++) data[i] = (2 * next() - 1) * a;
    }
    map.set(name, upload(data, shape, dtype));
  }
  return new ModelWeights(part, dtype, map, "<random>");
}

/** A Linear layer (`nn.Linear`): x [..., in] -> [..., out]. */
export class LinearModule {
  readonly kind = "linear" as const;
  /** Internal name, e.g. `unet.down_blocks.0.attentions.0.proj_in`. */
  readonly name: string;
  readonly #store: ModelWeights;

  constructor(store: ModelWeights, name: string) {
    this.#store = store;
    this.name = name;
    if (this.weight.rank !== 2) {
      throw new LorakitError(
        `${store.where}: '${name}.weight' must be 2-D, found [${this.weight.shape}]`,
      );
    }
  }

  get weight(): Tensor {
    return this.#store.get(`${this.name}.weight`);
  }
  get bias(): Tensor | null {
    return this.#store.maybe(`${this.name}.bias`);
  }
  get inFeatures(): number {
    return this.weight.shape[1];
  }
  get outFeatures(): number {
    return this.weight.shape[0];
  }

  /**
   * The layer's output, plus `residual` when given (added in the same GEMM: a residual
   * connection costs no op of its own). LoRA may replace this method on the instance to add its
   * branch.
   */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    return linear(x, this.weight, this.bias, { residual });
  }
}

/** Stride and padding of a `Conv2dModule`. */
export interface ConvModuleOptions {
  stride?: number;
  padding?: number | ConvPadding;
}

/**
 * A 2-D convolution (`nn.Conv2d`, NCHW), square stride, padding the same on every side or
 * `[top, bottom, left, right]` (an `F.pad` before the conv folded in).
 */
export class Conv2dModule {
  readonly kind = "conv2d" as const;
  readonly name: string;
  readonly stride: number;
  readonly padding: number | ConvPadding;
  readonly #store: ModelWeights;

  constructor(store: ModelWeights, name: string, opts: ConvModuleOptions = {}) {
    this.#store = store;
    this.name = name;
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 0;
    if (this.weight.rank !== 4) {
      throw new LorakitError(
        `${store.where}: '${name}.weight' must be 4-D, found [${this.weight.shape}]`,
      );
    }
  }

  get weight(): Tensor {
    return this.#store.get(`${this.name}.weight`);
  }
  get bias(): Tensor | null {
    return this.#store.maybe(`${this.name}.bias`);
  }
  get inChannels(): number {
    return this.weight.shape[1];
  }
  get outChannels(): number {
    return this.weight.shape[0];
  }
  get kernelSize(): number {
    return this.weight.shape[2];
  }

  /**
   * The layer's output, plus `residual` when given (added in the convolution's store). LoRA may
   * replace this method on the instance to add its branch.
   */
  forward(x: Tensor, residual: Tensor | null = null): Tensor {
    return conv2d(x, this.weight, this.bias, {
      stride: this.stride,
      padding: this.padding,
      residual,
    });
  }
}

/** The layers LoRA can hook. */
export type LayerModule = LinearModule | Conv2dModule;

/** GroupNorm with its own eps and group count, optionally fused with SiLU. */
export class GroupNormModule {
  constructor(
    readonly store: ModelWeights,
    readonly name: string,
    readonly groups: number,
    readonly eps: number,
  ) {
    store.get(`${name}.weight`);
  }
  forward(x: Tensor, opts: { silu?: boolean } = {}): Tensor {
    const s = this.store;
    return groupNorm(
      x,
      s.get(`${this.name}.weight`),
      s.get(`${this.name}.bias`),
      this.groups,
      this.eps,
      opts,
    );
  }
}

/** LayerNorm over the last dimension. */
export class LayerNormModule {
  constructor(readonly store: ModelWeights, readonly name: string, readonly eps: number) {
    store.get(`${name}.weight`);
  }
  forward(x: Tensor): Tensor {
    const s = this.store;
    return layerNorm(x, s.get(`${this.name}.weight`), s.get(`${this.name}.bias`), this.eps);
  }
}

/**
 * Builds a model's modules from its weights and records every Linear/Conv2d in creation order,
 * so the model can list them (`modules()`) for LoRA.
 */
export class ModuleBuilder {
  readonly layers: LayerModule[] = [];
  constructor(readonly store: ModelWeights) {}

  linear(name: string): LinearModule {
    const m = new LinearModule(this.store, name);
    this.layers.push(m);
    return m;
  }
  conv(name: string, opts: ConvModuleOptions = {}): Conv2dModule {
    const m = new Conv2dModule(this.store, name, opts);
    this.layers.push(m);
    return m;
  }
  groupNorm(name: string, groups: number, eps: number): GroupNormModule {
    return new GroupNormModule(this.store, name, groups, eps);
  }
  layerNorm(name: string, eps: number): LayerNormModule {
    return new LayerNormModule(this.store, name, eps);
  }
}
