/**
 * What kohya gen_img generates, in its order, before anything runs: for each of `--n_iter`
 * iterations, each prompt line, `--images_per_prompt` images, each with its parsed per-prompt
 * options (`--n --w --h --d --l --nl --s --t --am --f`), its seed and its img2img source; grouped
 * into batches of `--batch_size` that share size, steps, scales, strength and network
 * multipliers (a change starts a new batch, as kohya's `BatchDataExt` comparison does).
 *
 * Seeds follow kohya's rules: `--d` seeds are taken in order and the last one repeats; `--d -1`
 * (alone) means random; otherwise `--iter_same_seed` gives every image of an iteration one seed,
 * and else each image draws a seed from the seed-of-seeds generator started from `--seed`.
 * With `--seed`, a single prompt and `--images_per_prompt 1`, the seed is used as is (kohya's
 * intent; its code crashes there). The seed-of-seeds generator is lorakit's (kohya's is Python's
 * `random.Random`), so the seeds drawn from a given `--seed` differ from kohya's; every image's
 * seed is recorded in its PNG, and `--d <seed>` regenerates it.
 *
 * Planning validates everything it can (sizes, seeds, file names, unsupported prompt syntax), so
 * bad input is reported before any image is written.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import {
  padNetworkMultipliers,
  parsePromptOptions,
  type PromptOptions,
} from "../text/prompt_options.ts";
import { checkPromptFileName, promptFileName } from "./file_naming.ts";
import { GaussianGenerator } from "./noise.ts";

/** The image settings a run gives and a prompt line's options may override. */
export interface ImageSettings {
  /** `--W`, `--H` (kohya's default 512). */
  width: number;
  height: number;
  steps: number;
  scale: number;
  negativeScale: number | null;
  /** `--strength` (kohya's default 0.8). */
  strength: number;
}

/**
 * SDXL's size conditioning as given (`--original_width ...` or a prompt's `--ow ...`); null
 * takes kohya's default: the original size is the generated size, the negative's original
 * size is the original size, crops are 0.
 */
export interface SizeConditioning {
  originalWidth: number | null;
  originalHeight: number | null;
  originalWidthNegative: number | null;
  originalHeightNegative: number | null;
  cropTop: number | null;
  cropLeft: number | null;
}

/** Settings shared by a batch (kohya's `BatchDataExt`). */
export interface JobSettings extends ImageSettings {
  /** Per-prompt `--am` multipliers (padded to the network count), or null for the defaults. */
  networkMuls: readonly number[] | null;
  /** SDXL runs only: the size conditioning. */
  sizeConditioning?: SizeConditioning;
}

/** One image to generate. */
export interface GenJob {
  /** Iteration (from 0). */
  iteration: number;
  /** kohya's `global_step` (per iteration, from 0): picks the img2img source. */
  step: number;
  /** Image number over the whole run (from 1), for sequential names. */
  number: number;
  prompt: string;
  negativePrompt: string;
  /** The prompt line as written, with its options. */
  rawPrompt: string;
  seed: number;
  /** Index of the img2img source image, or null for txt2img. */
  initImage: number | null;
  /** A prompt's `--f` name (suffixed when a prompt makes several images), or null. */
  fileName: string | null;
  settings: JobSettings;
}

/** Where a prompt line came from, for messages. */
export interface PromptLine {
  text: string;
  /** e.g. `prompts.txt line 3` or `--prompt`. */
  where: string;
}

/** Inputs of {@link planGeneration}: the run's image settings, then how prompts become jobs. */
export interface PlanOptions extends ImageSettings {
  imagesPerPrompt: number;
  nIter: number;
  batchSize: number;
  /** `--seed`, or null for a random seed of seeds. */
  seed: number | null;
  iterSameSeed: boolean;
  /** `--shuffle_prompts`. */
  shufflePrompts?: boolean;
  /** Number of networks applied (not merged), for `--am`. */
  networks: number;
  /**
   * Sizes of the img2img sources (after `--W`/`--H` resizing), or null for txt2img. Without the
   * highres fix an image's size, rounded down to multiples of 32, is the generated size.
   */
  initImageSizes: readonly (readonly [number, number])[] | null;
  /** `--highres_fix_scale` given. */
  highresFix: boolean;
  /** Called with kohya's "Exception in parsing" messages (kohya logs them and goes on). */
  warn?: (message: string) => void;
  /**
   * SDXL runs: the run's size conditioning flags, which prompts' `--ow --oh --nw --nh --ct --cl`
   * override. Absent for SD 1.x/2.x (those options are then warned about and ignored).
   */
  sdxlSize?: SizeConditioning;
}

const LINE_BREAK = /[\n\r\u2028\u2029]/;

/**
 * Whether a prompt holds kohya's dynamic-prompt syntax `{a|b}` (which lorakit does not expand):
 * whether kohya's `RE_DYNAMIC_PROMPT`,
 * `\{((e|E)\$\$)?(([\d-]+)\$\$)?(([^|}]+?)\$\$)?(.+?((\|).+?)*?)\}`, matches anywhere. Testing that
 * regex backtracks exponentially in the `|`s of a brace that never closes (60 characters took
 * seconds), so its language is decided here in one pass. The optional prefixes can always be read
 * as part of the variants, except that the last one, `[^|}]+?\$\$`, may hold a line break: so
 * a match is a `{`, then `}` after at least one character with no line break in between (A), or
 * a `{`, then `$$` after at least one character with no `|` or `}` in between, then `}` after at
 * least one more character with no line break between `$$` and it (B).
 */
export function hasDynamicPrompt(text: string): boolean {
  const n = text.length;
  // nextClose[p]: the first "}" at or after p; nextBreak[p]: the first line break at or after p.
  const nextClose = new Int32Array(n + 1);
  const nextBreak = new Int32Array(n + 1);
  nextClose[n] = nextBreak[n] = n;
  for (let p = n - 1; p >= 0; p--) {
    nextClose[p] = text[p] === "}" ? p : nextClose[p + 1];
    nextBreak[p] = LINE_BREAK.test(text[p]) ? p : nextBreak[p + 1];
  }
  // A: the first "{" of each stretch without line breaks, then any "}" two or more places on.
  let openInLine = -1;
  // B: the first "{" since the last "|" or "}".
  let openSinceBar = -1;
  for (let p = 0; p < n; p++) {
    const c = text[p];
    if (LINE_BREAK.test(c)) openInLine = -1;
    else if (c === "}" && openInLine >= 0 && openInLine <= p - 2) return true;
    if (c === "|" || c === "}") openSinceBar = -1;
    if (c === "$" && text[p + 1] === "$" && openSinceBar >= 0 && openSinceBar <= p - 2) {
      const close = p + 3 <= n ? nextClose[p + 3] : n;
      if (close < n && close < nextBreak[p + 2]) return true;
    }
    if (c === "{") {
      if (openInLine < 0) openInLine = p;
      if (openSinceBar < 0) openSinceBar = p;
    }
  }
  return false;
}

const MAX_SEED = 0xffffffff;

/** A source of seeds: kohya's `seed_random.randint(0, 2**32 - 1)`. */
export interface SeedSource {
  next(): number;
}

/** Check a seed is one the noise generator takes (0 .. 2^32-1). */
export function checkSeed(seed: number, where: string): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
    throw new LorakitError(`${where}: expected a seed from 0 to ${MAX_SEED}, found ${seed}`);
  }
  return seed;
}

/** The seed-of-seeds generator: seeded by `--seed`, else by the platform's random source. */
export function seedSource(seed: number | null, fixed: boolean): SeedSource {
  if (seed !== null && fixed) return { next: () => seed };
  const start = seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  const g = new GaussianGenerator(start);
  return { next: () => g.nextUint32() };
}

function checkSize(w: number, h: number, where: string): void {
  if (!(w > 0 && h > 0 && w % 8 === 0 && h % 8 === 0)) {
    throw new LorakitError(
      `${where}: expected a width and height that are positive multiples of 8, found ${w}x${h}`,
    );
  }
}

function sameSettings(a: JobSettings, b: JobSettings): boolean {
  return a.width === b.width && a.height === b.height && a.steps === b.steps &&
    a.scale === b.scale && a.negativeScale === b.negativeScale && a.strength === b.strength &&
    (a.networkMuls ?? []).join() === (b.networkMuls ?? []).join() &&
    (a.networkMuls === null) === (b.networkMuls === null) &&
    JSON.stringify(a.sizeConditioning ?? null) === JSON.stringify(b.sizeConditioning ?? null);
}

/** Reject per-prompt options of features lorakit lacks; warn about the SDXL-only ones. */
function checkPromptFeatures(
  opts: PromptOptions,
  where: string,
  warn: ((m: string) => void) | undefined,
  sdxl: boolean,
): void {
  const missing = opts.deepShrink
    ? "Deep Shrink (--dsd1 ...)"
    : opts.gradualLatent
    ? "Gradual Latent (--glt ...)"
    : null;
  if (missing !== null) {
    throw new LorakitError(
      `${where}: ${missing} options are not supported by lorakit; remove them`,
    );
  }
  const sdxlOnly = [
    opts.originalWidth,
    opts.originalHeight,
    opts.originalWidthNegative,
    opts.originalHeightNegative,
    opts.cropTop,
    opts.cropLeft,
  ].some((v) => v !== undefined);
  if (sdxlOnly && !sdxl) {
    warn?.(`${where}: --ow/--oh/--nw/--nh/--ct/--cl are SDXL options: no effect on SD 1.x/2.x`);
  }
  if (opts.clipPrompt !== undefined) {
    warn?.(`${where}: --c (CLIP guidance prompt) has no effect in lorakit's gen_img`);
  }
}

/** A prompt's SDXL size options over the run's. */
function sizeOf(opts: PromptOptions, run: SizeConditioning): SizeConditioning {
  return {
    originalWidth: opts.originalWidth ?? run.originalWidth,
    originalHeight: opts.originalHeight ?? run.originalHeight,
    originalWidthNegative: opts.originalWidthNegative ?? run.originalWidthNegative,
    originalHeightNegative: opts.originalHeightNegative ?? run.originalHeightNegative,
    cropTop: opts.cropTop ?? run.cropTop,
    cropLeft: opts.cropLeft ?? run.cropLeft,
  };
}

/** Fisher-Yates shuffle driven by a seed source (`--shuffle_prompts`). */
function shuffle<T>(items: T[], rng: SeedSource): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = rng.next() % (i + 1);
    [items[i], items[j]] = [items[j], items[i]];
  }
}

/** Plan every batch of a run (see the module comment). */
export function planGeneration(lines: readonly PromptLine[], o: PlanOptions): GenJob[][] {
  if (lines.length === 0) throw new LorakitError("no prompt: give --prompt or --from_file");
  for (
    const [flag, v] of [
      ["--images_per_prompt", o.imagesPerPrompt],
      ["--n_iter", o.nIter],
      ["--batch_size", o.batchSize],
      ["--steps", o.steps],
    ] as const
  ) {
    if (!Number.isInteger(v) || v < 1) {
      throw new LorakitError(`${flag}: expected a positive integer, found ${v}`);
    }
  }
  if (o.seed !== null) checkSeed(o.seed, "--seed");
  const fixed = o.seed !== null && lines.length === 1 && o.imagesPerPrompt === 1;
  const rng = seedSource(o.seed, fixed);
  const batches: GenJob[][] = [];
  let pending: GenJob[] = [];
  const flush = (): void => {
    if (pending.length > 0) batches.push(pending);
    pending = [];
  };
  let number = 0;
  const order = [...lines];
  for (let iteration = 0; iteration < o.nIter; iteration++) {
    const iterSeed = o.iterSameSeed ? rng.next() : null;
    if (o.shufflePrompts) shuffle(order, rng);
    let step = 0;
    for (const line of order) {
      if (hasDynamicPrompt(line.text)) {
        throw new LorakitError(
          `${line.where}: dynamic prompt variants ('{a|b}') are not supported by lorakit; ` +
            `write one prompt line per variant`,
        );
      }
      const opts = parsePromptOptions(line.text);
      for (const e of opts.errors) o.warn?.(`${line.where}: could not parse option '--${e}'`);
      checkPromptFeatures(opts, line.where, o.warn, o.sdxlSize !== undefined);
      const several = o.imagesPerPrompt > 1;
      const seeds = opts.seeds ? [...opts.seeds] : null;
      if (seeds) seeds.forEach((s, i) => s === -1 || checkSeed(s, `${line.where}: --d seed ${i}`));
      const fileName = opts.fileName === undefined
        ? null
        : checkPromptFileName(opts.fileName, line.where);
      let seedsLeft: number[] | null = seeds;
      let seed: number | null = null;
      for (let pi = 0; pi < o.imagesPerPrompt; pi++) {
        // kohya's seed rule (see the module comment).
        if (seedsLeft !== null) {
          if (seedsLeft.length > 1) seed = seedsLeft.shift()!;
          else if (seedsLeft.length === 1) {
            if (seedsLeft[0] === -1) {
              seedsLeft = null;
              seed = o.iterSameSeed ? iterSeed : null;
            } else seed = seedsLeft.shift()!;
          }
        } else seed = o.iterSameSeed ? iterSeed : null;
        if (seed === null) seed = rng.next();

        let width = opts.width ?? o.width, height = opts.height ?? o.height;
        let initImage: number | null = null;
        if (o.initImageSizes !== null) {
          if (o.initImageSizes.length === 0) throw new LorakitError("--image_path: no images");
          initImage = step % o.initImageSizes.length;
          if (!o.highresFix) {
            const [iw, ih] = o.initImageSizes[initImage];
            width = iw - (iw % 32);
            height = ih - (ih % 32);
          }
        }
        checkSize(width, height, opts.width || opts.height ? `${line.where}: --w/--h` : "--W/--H");
        const muls = opts.networkMultipliers
          ? padNetworkMultipliers(opts.networkMultipliers, o.networks)
          : null;
        if (muls && muls.length !== o.networks) {
          throw new LorakitError(
            `${line.where}: --am: expected at most ${o.networks} multipliers (one per applied ` +
              `network), found ${muls.length}`,
          );
        }
        const strength = opts.strength ?? o.strength;
        if (!(strength >= 0 && strength <= 1)) {
          throw new LorakitError(
            `${line.where}: strength: expected a value in [0, 1], found ${strength}`,
          );
        }
        const negativeScale = opts.negativeScale !== undefined
          ? opts.negativeScale
          : o.negativeScale;
        if (o.sdxlSize !== undefined && negativeScale !== null) {
          throw new LorakitError(
            `${opts.negativeScale != null ? `${line.where}: --nl` : "--negative_scale"}: ` +
              `not supported for SDXL (kohya's sdxl_gen_img fails with it too); remove it`,
          );
        }
        const job: GenJob = {
          iteration,
          step,
          number: ++number,
          prompt: opts.prompt,
          negativePrompt: opts.negativePrompt ?? "",
          rawPrompt: line.text,
          seed,
          initImage,
          fileName: fileName === null ? null : promptFileName(fileName, pi, several),
          settings: {
            width,
            height,
            steps: opts.steps ?? o.steps,
            scale: opts.scale ?? o.scale,
            negativeScale,
            strength,
            networkMuls: muls,
            ...(o.sdxlSize === undefined ? {} : { sizeConditioning: sizeOf(opts, o.sdxlSize) }),
          },
        };
        if (
          pending.length > 0 && !sameSettings(pending[pending.length - 1].settings, job.settings)
        ) {
          flush();
        }
        pending.push(job);
        if (pending.length === o.batchSize) flush();
        step++;
      }
    }
    flush();
  }
  return batches;
}
