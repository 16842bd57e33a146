/**
 * Per-prompt options of kohya's gen_img prompt lines: `prompt text --n negative --w 768 --d 1,2`.
 * The line is stripped and split at every " --"; the first part is the prompt and each other part
 * is matched, case-insensitively and at its start, against kohya's option patterns in kohya's
 * order (so `nl` wins over `n`, `cl` over `c`, `gls` needs a space after it). A part no pattern
 * matches is ignored, as kohya does; a value Python could not convert (`--l 1.2.3`) is reported
 * in `errors` and otherwise ignored, as kohya logs and goes on.
 *
 * @module
 */

/** The options found on one prompt line (absent: not given). */
export interface PromptOptions {
  /** The prompt text (before the first " --"). */
  prompt: string;
  /** `--w`, `--h`: image size. */
  width?: number;
  height?: number;
  /** `--ow`, `--oh`, `--nw`, `--nh`, `--ct`, `--cl`: SDXL size conditioning. */
  originalWidth?: number;
  originalHeight?: number;
  originalWidthNegative?: number;
  originalHeightNegative?: number;
  cropTop?: number;
  cropLeft?: number;
  /** `--s`: steps, clamped to [1, 1000]. */
  steps?: number;
  /** `--d`: seeds, one per image (`-1` as the only value: random). */
  seeds?: number[];
  /** `--l`: guidance scale. */
  scale?: number;
  /** `--nl`: negative scale (null for `none`). */
  negativeScale?: number | null;
  /** `--t`: img2img strength. */
  strength?: number;
  /** `--n`: negative prompt. */
  negativePrompt?: string;
  /** `--c`: CLIP guidance prompt. */
  clipPrompt?: string;
  /** `--am`: additional-network multipliers (see `padNetworkMultipliers`). */
  networkMultipliers?: number[];
  /** `--dsd1`, `--dst1`, `--dsd2`, `--dst2`, `--dsr`: Deep Shrink overrides. */
  deepShrink?: {
    depth1?: number;
    timesteps1?: number;
    depth2?: number;
    timesteps2?: number;
    ratio?: number;
  };
  /** `--glt`, `--glr`, `--gle`, `--gls`, `--glsn`, `--glus`: Gradual Latent overrides. */
  gradualLatent?: {
    timesteps?: number;
    ratio?: number;
    everyNSteps?: number;
    ratioStep?: number;
    sNoise?: number;
    unsharpParams?: string;
  };
  /** `--f`: output file name. */
  fileName?: string;
  /** Parts whose value could not be converted (kohya logs "Exception in parsing"). */
  errors: string[];
}

/** Python's `int()` of a `\d+`-style match (throws on what Python rejects). */
function toInt(s: string): number {
  if (!/^\d+$/.test(s)) throw new Error(`invalid literal for int(): '${s}'`);
  return Number(s);
}

/** Python's `float()` of a `[\d.]+`-style match. */
function toFloat(s: string): number {
  if (!/^[+-]?(\d+\.?\d*|\.\d+)$/.test(s)) throw new Error(`could not convert to float: '${s}'`);
  return Number(s);
}

type Rule = [pattern: RegExp, apply: (o: PromptOptions, value: string) => void];

const ds = (o: PromptOptions): NonNullable<PromptOptions["deepShrink"]> => (o.deepShrink ??= {});
const gl = (
  o: PromptOptions,
): NonNullable<PromptOptions["gradualLatent"]> => (o.gradualLatent ??= {});

// kohya's order; each pattern is anchored at the start of the part (Python's re.match).
const RULES: Rule[] = [
  [/^w (\d+)/i, (o, v) => o.width = toInt(v)],
  [/^h (\d+)/i, (o, v) => o.height = toInt(v)],
  [/^ow (\d+)/i, (o, v) => o.originalWidth = toInt(v)],
  [/^oh (\d+)/i, (o, v) => o.originalHeight = toInt(v)],
  [/^nw (\d+)/i, (o, v) => o.originalWidthNegative = toInt(v)],
  [/^nh (\d+)/i, (o, v) => o.originalHeightNegative = toInt(v)],
  [/^ct (\d+)/i, (o, v) => o.cropTop = toInt(v)],
  [/^cl (\d+)/i, (o, v) => o.cropLeft = toInt(v)],
  [/^s (\d+)/i, (o, v) => o.steps = Math.max(1, Math.min(1000, toInt(v)))],
  [/^d ([\d,]+)/i, (o, v) => o.seeds = v.split(",").map(toInt)],
  [/^l ([\d.]+)/i, (o, v) => o.scale = toFloat(v)],
  [/^nl ([\d.]+|none|None)/i, (o, v) => {
    o.negativeScale = v.toLowerCase() === "none" ? null : toFloat(v);
  }],
  [/^t ([\d.]+)/i, (o, v) => o.strength = toFloat(v)],
  [/^n (.+)/i, (o, v) => o.negativePrompt = v],
  [/^c (.+)/i, (o, v) => o.clipPrompt = v],
  [/^am ([\d.\-,]+)/i, (o, v) => o.networkMultipliers = v.split(",").map(toFloat)],
  [/^dsd1 ([\d.]+)/i, (o, v) => ds(o).depth1 = toInt(v)],
  [/^dst1 ([\d.]+)/i, (o, v) => ds(o).timesteps1 = toInt(v)],
  [/^dsd2 ([\d.]+)/i, (o, v) => ds(o).depth2 = toInt(v)],
  [/^dst2 ([\d.]+)/i, (o, v) => ds(o).timesteps2 = toInt(v)],
  [/^dsr ([\d.]+)/i, (o, v) => ds(o).ratio = toFloat(v)],
  [/^glt ([\d.]+)/i, (o, v) => gl(o).timesteps = toInt(v)],
  [/^glr ([\d.]+)/i, (o, v) => gl(o).ratio = toFloat(v)],
  [/^gle ([\d.]+)/i, (o, v) => gl(o).everyNSteps = toInt(v)],
  [/^gls ([\d.]+)/i, (o, v) => gl(o).ratioStep = toFloat(v)],
  [/^glsn ([\d.]+)/i, (o, v) => gl(o).sNoise = toFloat(v)],
  [/^glus ([\d.\-,]+)/i, (o, v) => gl(o).unsharpParams = v],
  [/^f (.+)/i, (o, v) => o.fileName = v],
];

// Python's str.strip() whitespace (ASCII whitespace plus Unicode spaces; JS trim() is close).
const strip = (s: string): string => s.trim();

/** Parse one prompt line's options as kohya's gen_img does. */
export function parsePromptOptions(line: string): PromptOptions {
  const [prompt, ...parts] = strip(line).split(" --");
  const out: PromptOptions = { prompt, errors: [] };
  for (const part of parts) {
    for (const [re, apply] of RULES) {
      const m = re.exec(part);
      if (!m) continue;
      try {
        apply(out, m[1]);
      } catch (e) {
        out.errors.push(`${part}: ${(e as Error).message}`);
      }
      break;
    }
  }
  return out;
}

/** kohya's `--am` rule: repeat the last multiplier until there is one per network. */
export function padNetworkMultipliers(multipliers: readonly number[], networks: number): number[] {
  const out = [...multipliers];
  while (out.length > 0 && out.length < networks) out.push(out[out.length - 1]);
  return out;
}
