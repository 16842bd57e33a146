/**
 * kohya's `--optimizer_type` / `--optimizer_args` (train_util.get_optimizer) resolved into a typed
 * {@link OptimizerSpec} for gpu/optim. Types are matched case-insensitively, as kohya lowercases
 * them; `optimizer_args` are "key=value" strings whose values are Python literals
 * (`parseOptimizerArgs`), the keyword arguments of the class kohya would build. Keys a class does
 * not take, and features not implemented, are errors naming the flag rather than silently ignored.
 *
 * @module
 */
import type { OptimizerSpec } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";

/** A parsed `optimizer_args` value. */
export type OptimizerArg = string | number | boolean | null | number[];

/** The `--optimizer_type` values implemented here, in kohya's spelling. */
export const SUPPORTED_OPTIMIZERS = ["AdamW", "AdamW8bit", "Lion", "SGDNesterov", "Adafactor"];

/** kohya's other optimizer types, which lorakit does not implement. */
const KOHYA_OTHERS = [
  "SGDNesterov8bit",
  "Lion8bit",
  "PagedAdamW8bit",
  "PagedAdamW",
  "PagedAdamW32bit",
  "PagedLion8bit",
  "DAdaptation",
  "DAdaptAdamPreprint",
  "DAdaptAdaGrad",
  "DAdaptAdam",
  "DAdaptAdan",
  "DAdaptAdanIP",
  "DAdaptLion",
  "DAdaptSGD",
  "Prodigy",
];

/** The optimizer a kohya command line asks for, with what kohya records and prints about it. */
export interface OptimizerChoice {
  spec: OptimizerSpec;
  /** kohya's optimizer_name (module.Class), for `ss_optimizer` metadata. */
  name: string;
  /** kohya's optimizer_args string ("k=v,..." after its own additions). */
  argsText: string;
  /**
   * True when the optimizer computes its own lr (Adafactor with relative_step): kohya then swaps
   * the lr scheduler for its `adafactor` scheduler and the lr flags only set the initial lr.
   */
  ownLr: boolean;
  /** What kohya logs for this choice, given the lr of each parameter group in order. */
  notes(groupLrs: readonly number[]): string[];
}

/** Parse one Python literal as `ast.literal_eval` would, for the value types optimizers take. */
function literal(text: string, key: string): OptimizerArg {
  const t = text.trim();
  if (t === "True") return true;
  if (t === "False") return false;
  if (t === "None") return null;
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(t)) return Number(t);
  const q = t.match(/^(['"])(.*)\1$/);
  if (q) return q[2];
  const seq = t.match(/^[([]\s*(.*?)\s*,?\s*[)\]]$/);
  if (seq) {
    const items = seq[1] === "" ? [] : seq[1].split(",").map((s) => literal(s, key));
    if (items.every((x) => typeof x === "number")) return items as number[];
  }
  throw new LorakitError(
    `--optimizer_args ${key}=${text}: the value must be a Python literal ` +
      `(a number, True/False/None, a quoted string, or a tuple of numbers)`,
  );
}

/** Parse kohya's `--optimizer_args` ("key=value" each; the value a Python literal). */
export function parseOptimizerArgs(args: readonly string[]): Record<string, OptimizerArg> {
  const out: Record<string, OptimizerArg> = {};
  for (const arg of args) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new LorakitError(`--optimizer_args '${arg}': expected key=value`);
    const key = arg.slice(0, eq).trim();
    out[key] = literal(arg.slice(eq + 1), key);
  }
  return out;
}

/** Python's str() of a value, as kohya's optimizer_args string shows it. */
function pyStr(v: OptimizerArg): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (Array.isArray(v)) return `(${v.join(", ")})`;
  return String(v);
}

/** Typed access to the kwargs of one class, with errors naming the flag. */
class Kwargs {
  constructor(
    private readonly type: string,
    private readonly args: Record<string, OptimizerArg>,
    allowed: string[],
  ) {
    for (const k of Object.keys(args)) {
      if (k === "lr") {
        throw new LorakitError(
          `--optimizer_args lr=...: kohya passes --learning_rate as lr; set the learning rate there`,
        );
      }
      if (!allowed.includes(k)) {
        throw new LorakitError(
          `--optimizer_args ${k}: ${type} does not take '${k}' (it takes ${allowed.join(", ")})`,
        );
      }
    }
  }
  private bad(k: string, want: string): never {
    throw new LorakitError(
      `--optimizer_args ${k}=${pyStr(this.args[k])}: ${this.type} expects ${want}`,
    );
  }
  num(k: string): number | undefined {
    const v = this.args[k];
    if (v === undefined) return undefined;
    const n = typeof v === "string" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isFinite(n)) this.bad(k, "a number");
    return n;
  }
  numOrNull(k: string): number | null | undefined {
    return this.args[k] === null ? null : this.num(k);
  }
  bool(k: string): boolean | undefined {
    const v = this.args[k];
    if (v === undefined) return undefined;
    if (typeof v === "boolean") return v;
    if (typeof v === "string" && /^(true|false)$/i.test(v)) return v.toLowerCase() === "true";
    if (typeof v === "number" && (v === 0 || v === 1)) return v === 1;
    this.bad(k, "True or False");
  }
  pair(k: string): [number, number] | undefined {
    let v = this.args[k];
    if (v === undefined) return undefined;
    if (typeof v === "string") v = literal(v.includes("(") ? v : `(${v})`, k);
    if (!Array.isArray(v) || v.length !== 2) this.bad(k, "a pair such as (0.9, 0.999)");
    return [v[0], v[1]];
  }
  /** A feature we do not implement: only its default value is accepted. */
  onlyDefault(k: string, ok: (v: OptimizerArg) => boolean, what: string): void {
    const v = this.args[k];
    if (v !== undefined && !ok(v)) {
      throw new LorakitError(
        `--optimizer_args ${k}=${pyStr(v)}: ${what} is not supported by lorakit`,
      );
    }
  }
}

const isFalse = (v: OptimizerArg) => v === false || v === null || v === 0;

/** kohya's name of the class, its args string after kohya's additions, and fixed notes. */
function choice(
  spec: OptimizerSpec,
  name: string,
  kw: Record<string, OptimizerArg>,
  fixed: string[] = [],
): OptimizerChoice {
  const argsText = Object.entries(kw).map(([k, v]) => `${k}=${pyStr(v)}`).join(",");
  return { spec, name, argsText, ownLr: false, notes: () => [...fixed] };
}

/**
 * The optimizer kohya's `--optimizer_type` names with `--optimizer_args` (already parsed). An
 * empty type is AdamW; unknown types are an error listing the supported ones.
 */
export function chooseOptimizer(
  type: string,
  args: Record<string, OptimizerArg> = {},
): OptimizerChoice {
  const key = (type || "AdamW").toLowerCase();
  const kw = { ...args };
  if (key === "adamw") {
    const a = new Kwargs("AdamW", kw, [
      "betas",
      "eps",
      "weight_decay",
      "amsgrad",
      "maximize",
      "foreach",
      "capturable",
      "differentiable",
      "fused",
    ]);
    a.onlyDefault("amsgrad", isFalse, "amsgrad");
    a.onlyDefault("maximize", isFalse, "maximize");
    const options = {
      betas: a.pair("betas"),
      eps: a.num("eps"),
      weightDecay: a.num("weight_decay"),
    };
    return choice({ type: "AdamW", options }, "torch.optim.adamw.AdamW", kw);
  }
  if (key === "adamw8bit") {
    const a = new Kwargs("AdamW8bit", kw, [
      "betas",
      "eps",
      "weight_decay",
      "amsgrad",
      "optim_bits",
      "min_8bit_size",
      "percentile_clipping",
      "block_wise",
      "is_paged",
      "block_size",
    ]);
    a.onlyDefault("amsgrad", isFalse, "amsgrad");
    a.onlyDefault("optim_bits", (v) => v === 8 || v === 32, "optim_bits other than 8 or 32");
    a.onlyDefault("percentile_clipping", (v) => v === 100, "percentile_clipping");
    a.onlyDefault("block_wise", (v) => v === true, "block_wise=False");
    a.onlyDefault("is_paged", isFalse, "is_paged (paged memory)");
    const bits = a.num("optim_bits");
    const blockSize = a.num("block_size");
    if (blockSize !== undefined && blockSize !== 256 && blockSize !== 2048) {
      throw new LorakitError(
        `--optimizer_args block_size=${blockSize}: AdamW8bit takes 256 or 2048`,
      );
    }
    const options = {
      betas: a.pair("betas"),
      eps: a.num("eps"),
      weightDecay: a.num("weight_decay"),
      // optim_bits=32 keeps every tensor in f32, as bitsandbytes does.
      min8bitSize: bits === 32 ? Infinity : a.num("min_8bit_size"),
      blockSize: blockSize as 256 | 2048 | undefined,
    };
    return choice({ type: "AdamW8bit", options }, "bitsandbytes.optim.adamw.AdamW8bit", kw);
  }
  if (key === "lion") {
    const a = new Kwargs("Lion", kw, [
      "betas",
      "weight_decay",
      "use_triton",
      "decoupled_weight_decay",
    ]);
    a.onlyDefault("decoupled_weight_decay", isFalse, "decoupled_weight_decay");
    a.bool("use_triton");
    const options = { betas: a.pair("betas"), weightDecay: a.num("weight_decay") };
    return choice({ type: "Lion", options }, "lion_pytorch.lion_pytorch.Lion", kw);
  }
  if (key === "sgdnesterov") {
    if ("nesterov" in kw) {
      throw new LorakitError(
        "--optimizer_args nesterov: SGDNesterov always sets nesterov=True; remove the argument",
      );
    }
    const a = new Kwargs("SGDNesterov", kw, ["momentum", "dampening", "weight_decay", "maximize"]);
    a.onlyDefault("maximize", isFalse, "maximize");
    const notes: string[] = [];
    if (!("momentum" in kw)) {
      notes.push("SGD with Nesterov must be with momentum, set momentum to 0.9");
      kw.momentum = 0.9;
    }
    const options = {
      momentum: a.num("momentum"),
      dampening: a.num("dampening"),
      weightDecay: a.num("weight_decay"),
      nesterov: true,
    };
    return choice({ type: "SGDNesterov", options }, "torch.optim.sgd.SGD", kw, notes);
  }
  if (key === "adafactor") return chooseAdafactor(kw);
  const supported = SUPPORTED_OPTIMIZERS.join(", ");
  const other = KOHYA_OTHERS.find((o) => o.toLowerCase() === key);
  if (other) {
    throw new LorakitError(
      `--optimizer_type ${type}: kohya's ${other} is not supported by lorakit; ` +
        `supported types are ${supported} (case-insensitive)`,
    );
  }
  throw new LorakitError(
    `--optimizer_type ${type}: unknown optimizer; supported types are ${supported} ` +
      `(case-insensitive). kohya's ${KOHYA_OTHERS.join(", ")} and arbitrary ` +
      `torch.optim / module.Class optimizers are not supported`,
  );
}

/** transformers' Adafactor as kohya builds it (relative_step on unless turned off). */
function chooseAdafactor(kw: Record<string, OptimizerArg>): OptimizerChoice {
  const a = new Kwargs("Adafactor", kw, [
    "eps",
    "clip_threshold",
    "decay_rate",
    "beta1",
    "weight_decay",
    "scale_parameter",
    "relative_step",
    "warmup_init",
  ]);
  const before: string[] = [];
  if (!("relative_step" in kw)) kw.relative_step = true;
  if (!a.bool("relative_step") && a.bool("warmup_init")) {
    before.push("set relative_step to True because warmup_init is True");
    kw.relative_step = true;
  }
  const relativeStep = a.bool("relative_step")!;
  const options = {
    eps: a.pair("eps"),
    clipThreshold: a.num("clip_threshold"),
    decayRate: a.num("decay_rate"),
    beta1: a.numOrNull("beta1"),
    weightDecay: a.num("weight_decay"),
    scaleParameter: a.bool("scale_parameter"),
    relativeStep,
    warmupInit: a.bool("warmup_init"),
  };
  const c = choice({ type: "Adafactor", options }, "transformers.optimization.Adafactor", kw);
  if (relativeStep) {
    c.ownLr = true;
    c.notes = (lrs) => [
      ...before,
      ...(lrs.length > 0 && lrs[0] !== 0 ? ["learning rate is used as initial_lr"] : []),
      ...(new Set(lrs).size > 1 ? ["unet_lr and text_encoder_lr are ignored"] : []),
      "use adafactor_scheduler",
    ];
  } else {
    const fixed = [
      ...before,
      "because max_grad_norm is set, clip_grad_norm is enabled. consider set to 0",
      "constant_with_warmup will be good",
    ];
    if ((a.num("clip_threshold") ?? 1) !== 1) fixed.push("clip_threshold=1.0 will be good");
    c.notes = () => [...fixed];
  }
  return c;
}
