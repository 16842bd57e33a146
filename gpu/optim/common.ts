/**
 * What every optimizer here shares: update options (a host gradient scale and/or a GPU one, so a
 * clipping factor computed on the GPU never needs a read-back), state export/import for
 * saving and resuming a training state, and the base class that walks parameter groups.
 *
 * @module
 */
import { rt } from "../runtime.ts";
import { Tensor } from "../tensor.ts";

/** An optimizer given options or a state it cannot take (the message says which). */
export class OptimizerError extends Error {
  override name = "OptimizerError";
}

/** A parameter group: tensors sharing one learning rate (e.g. one per U-Net block). */
export interface ParamGroup {
  params: Tensor[];
  lr: number;
}

/** Options of one optimizer step. */
export interface UpdateOptions {
  /** Multiplies every gradient first (e.g. 1 / loss scale). */
  gradScale?: number;
  /** Multiplies every group's lr (schedulers). */
  lrScale?: number;
  /**
   * A 1-element f32 tensor whose value also multiplies every gradient, read by the kernels
   * (e.g. the factor from `clipGradNorm`), so the host never waits for it.
   */
  gradScaleTensor?: Tensor;
}

/** A state tensor on the host: f32 values, or u32 words (packed 8-bit codes). */
export interface HostArray {
  shape: number[];
  dtype: "f32" | "u32";
  data: Float32Array | Uint32Array;
}

/**
 * An optimizer's state on the host: the step count and, per parameter in group order, its named
 * state tensors (null when the parameter has none yet).
 */
export interface OptimizerState {
  type: string;
  step: number;
  params: (Record<string, HostArray> | null)[];
}

/** The interface train loops use, whatever the algorithm. */
export interface Optimizer {
  /** The algorithm's name (`AdamW`, `Lion`, ...). */
  readonly type: string;
  readonly groups: ParamGroup[];
  step: number;
  update(opts?: UpdateOptions): void;
  zeroGrad(): void;
  exportState(): Promise<OptimizerState>;
  importState(state: OptimizerState): void;
  dispose(): void;
}

/** Accept a flat tensor list (one group at `lr`) or groups. */
export function toGroups(groups: ParamGroup[] | Tensor[], lr: number): ParamGroup[] {
  return groups.length && groups[0] instanceof Tensor
    ? [{ params: groups as Tensor[], lr }]
    : (groups as ParamGroup[]);
}

/** The parameters of all groups in order (the order of exported state). */
export function allParams(groups: ParamGroup[]): Tensor[] {
  return groups.flatMap((g) => g.params);
}

/**
 * A 1-element tensor holding 1.0, bound where no `gradScaleTensor` is given, so each kernel has
 * one layout. Owned by the optimizer that asked for it.
 */
export class ScaleSlot {
  private one: Tensor | null = null;
  /** The buffer the kernels read the GPU gradient scale from. */
  buffer(opts: UpdateOptions): GPUBuffer {
    if (opts.gradScaleTensor) return opts.gradScaleTensor.buffer;
    if (!this.one) this.one = Tensor.full([1], 1).keep();
    return this.one.buffer;
  }
  dispose(): void {
    this.one?.dispose();
    this.one = null;
  }
}

/** Download named state tensors (`packed` names hold u32 words). */
export async function exportStates(
  type: string,
  step: number,
  groups: ParamGroup[],
  stateOf: (p: Tensor) => Record<string, Tensor> | undefined,
  packed: ReadonlySet<string> = new Set(),
): Promise<OptimizerState> {
  const states = allParams(groups).map((p) => stateOf(p));
  const all = states.flatMap((s) => (s ? Object.values(s) : []));
  // Every state tensor in one read-back (one wait, not one per tensor).
  const raws = await rt().readBuffers(
    all.map((t) => ({ buffer: t.buffer, offset: 0, bytes: t.size * 4 })),
  );
  let k = 0;
  const params = states.map((s) => {
    if (!s) return null;
    const out: Record<string, HostArray> = {};
    for (const [name, t] of Object.entries(s)) {
      const raw = raws[k++];
      out[name] = packed.has(name)
        ? { shape: t.shape.slice(), dtype: "u32", data: new Uint32Array(raw) }
        : { shape: t.shape.slice(), dtype: "f32", data: new Float32Array(raw) };
    }
    return out;
  });
  return { type, step, params };
}

/**
 * Check `state` against this optimizer and write it into freshly made state tensors (`init`),
 * returning them per parameter. Throws with the parameter index and tensor name on a mismatch.
 */
export function importStates<S extends Record<string, Tensor>>(
  type: string,
  groups: ParamGroup[],
  state: OptimizerState,
  init: (p: Tensor) => S,
): Map<Tensor, S> {
  if (state.type.toLowerCase() !== type.toLowerCase()) {
    throw new OptimizerError(`optimizer state is for ${state.type}, this optimizer is ${type}`);
  }
  const params = allParams(groups);
  if (state.params.length !== params.length) {
    throw new OptimizerError(
      `${type} state has ${state.params.length} parameters, the optimizer has ${params.length}`,
    );
  }
  const out = new Map<Tensor, S>();
  const writes: [Tensor, HostArray][] = [];
  const fail = (msg: string): never => {
    for (const done of out.values()) for (const x of Object.values(done)) x.dispose();
    throw new OptimizerError(msg);
  };
  params.forEach((p, k) => {
    const host = state.params[k];
    if (!host) return;
    const s = init(p);
    out.set(p, s);
    for (const [name, t] of Object.entries(s)) {
      const h = host[name];
      if (!h || h.data.length !== t.size || h.shape.join() !== t.shape.join()) {
        fail(
          `${type} state of parameter ${k} [${p.shape}]: '${name}' is ${
            h ? `[${h.shape}]` : "missing"
          }, expected [${t.shape}]`,
        );
      }
      writes.push([t, h]);
    }
  });
  // The zero fills of `init` are encoded dispatches; queue writes run before the next submit, so
  // submit the fills first or they would overwrite the imported values.
  rt().flush();
  for (const [t, h] of writes) {
    // A copy: the host array may view a SharedArrayBuffer or a larger buffer.
    const bytes = new Uint8Array(h.data.byteLength);
    bytes.set(new Uint8Array(h.data.buffer, h.data.byteOffset, h.data.byteLength));
    rt().write(t.buffer, 0, bytes);
  }
  return out;
}

/** Base of the optimizers with per-parameter GPU state tensors `S`. */
export abstract class StatefulOptimizer<S extends Record<string, Tensor>> implements Optimizer {
  abstract readonly type: string;
  readonly groups: ParamGroup[];
  step = 0;
  protected state: Map<Tensor, S> = new Map();
  protected readonly scale: ScaleSlot = new ScaleSlot();
  /** Names of state tensors that hold packed u32 words. */
  protected packed: ReadonlySet<string> = new Set();

  constructor(groups: ParamGroup[] | Tensor[], lr: number) {
    this.groups = toGroups(groups, lr);
  }

  /** Fresh (zeroed) state for a parameter. */
  protected abstract initState(p: Tensor): S;
  /** Encode the update of one parameter; `lr` already includes lrScale. */
  protected abstract apply(p: Tensor, s: S, lr: number, gscale: number, gs: GPUBuffer): void;
  /** Called once per step before the parameters (after `step` is incremented). */
  protected beginStep(): void {}

  /** One update of every parameter that has a gradient. */
  update(opts: UpdateOptions = {}): void {
    this.step++;
    this.beginStep();
    const gs = this.scale.buffer(opts);
    for (const group of this.groups) {
      const lr = group.lr * (opts.lrScale ?? 1);
      for (const p of group.params) {
        if (!p.grad) continue;
        let s = this.state.get(p);
        if (!s) {
          s = this.initState(p);
          this.state.set(p, s);
        }
        this.apply(p, s, lr, opts.gradScale ?? 1, gs);
      }
    }
  }

  /** Drop every parameter's gradient. */
  zeroGrad(): void {
    for (const g of this.groups) {
      for (const p of g.params) {
        p.grad?.dispose();
        p.grad = null;
      }
    }
  }

  /** The state tensors of a parameter. */
  stateOf(p: Tensor): S | undefined {
    return this.state.get(p);
  }

  /** Step count and state tensors on the host. */
  exportState(): Promise<OptimizerState> {
    return exportStates(this.type, this.step, this.groups, (p) => this.state.get(p), this.packed);
  }

  /** Replace the state with an exported one (same parameters, same shapes). */
  importState(state: OptimizerState): void {
    const fresh = importStates(this.type, this.groups, state, (p) => this.initState(p));
    this.disposeState();
    this.state = fresh;
    this.step = state.step;
  }

  private disposeState(): void {
    for (const s of this.state.values()) for (const t of Object.values(s)) t.dispose();
    this.state.clear();
  }

  /** Release the optimizer state. */
  dispose(): void {
    this.disposeState();
    this.scale.dispose();
  }
}
