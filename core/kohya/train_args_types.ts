/**
 * The shape of one train_network flag (name, type, nargs, default, choices as kohya declares
 * it), lorakit's support class for it, the value converters with Python's `int()`/`float()`
 * rules, and the mapped type that turns a flag table into the typed parse result.
 *
 * @module
 */

/** How lorakit treats a kohya flag. */
export type Support =
  /** Meaningful in lorakit. */
  | "yes"
  /** Accepted so kohya command lines work, but it changes nothing here; a note says why. */
  | "noop"
  /** An error when set to anything but its default, naming the flag and the reason. */
  | "reject";

/** Value kinds, as kohya's `type=` / `action=`. */
export type FlagType = "bool" | "str" | "int" | "float" | "int_or_float";

/** One flag as kohya declares it. */
export interface FlagSpec {
  readonly name: string;
  readonly type: FlagType;
  readonly default: string | number | boolean | null;
  readonly nargs?: "*";
  readonly choices?: readonly (string | number)[];
  readonly help: string;
  readonly support?: Support;
  /** Why a flag is a no-op or rejected (shown in the note, the error and --help). */
  readonly note?: string;
}

type Elem<F extends FlagSpec> = F["type"] extends "str" ? string : number;

/** The parsed value type of one flag. */
export type ValueOf<F extends FlagSpec> = F["type"] extends "bool" ? boolean
  : F["nargs"] extends "*" ? Elem<F>[] | null
  : F["default"] extends null ? Elem<F> | null
  : Elem<F>;

/** A table of flags as an object type keyed by flag name. */
export type ArgsOf<T extends readonly FlagSpec[]> = {
  -readonly [F in T[number] as F["name"]]: ValueOf<F>;
};

/** Python's `int(text)`: optional sign, digits (underscores between them), surrounding spaces. */
export function pyInt(text: string): number {
  const t = text.trim();
  if (!/^[+-]?\d+(_\d+)*$/.test(t)) throw new TypeError(`invalid int value: '${text}'`);
  return Number(t.replace(/_/g, ""));
}

/** Python's `float(text)`: decimal or exponent notation, inf, nan. */
export function pyFloat(text: string): number {
  const t = text.trim().toLowerCase().replace(/_/g, "");
  if (/^[+-]?(inf|infinity)$/.test(t)) return t.startsWith("-") ? -Infinity : Infinity;
  if (/^[+-]?nan$/.test(t)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(t)) {
    throw new TypeError(`invalid float value: '${text}'`);
  }
  return Number(t);
}

/**
 * kohya's `int_or_float` (`--lr_warmup_steps`, `--lr_decay_steps`): "10%" is 0.1, a value of 1 or
 * more is an integer step count, below 1 a ratio of the training steps.
 */
export function pyIntOrFloat(text: string): number {
  if (text.endsWith("%")) return pyFloat(text.slice(0, -1)) / 100;
  const f = pyFloat(text);
  return f >= 1 ? pyInt(text) : f;
}
