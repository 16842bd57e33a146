/**
 * kohya's `process_caption` (library/train_util.py, BaseDataset): prefix/suffix, caption dropout
 * (by rate and every N epochs), wildcards, the first line of multi-line captions, keep_tokens /
 * keep_tokens_separator, token warmup, tag shuffling and tag dropout, the secondary separator.
 *
 * Randomness: kohya draws from Python's global `random` (Mersenne Twister). lorakit takes the
 * generator as an argument ({@link Random}, e.g. `seededRandom` from buckets.ts) and draws in the
 * same order and the same way (`random()` compared with the rate, `choice` = index
 * `floor(r * n)`, `shuffle` = Fisher–Yates from the end), so the same decisions are made for the
 * same uniform numbers; only the stream of numbers differs from Python's.
 *
 * @module
 */
import type { CaptionSettings } from "../kohya/dataset_config.ts";
import { type Random, shuffleInPlace } from "./buckets.ts";

export type { CaptionSettings };

/** Where training is: kohya's `current_epoch` (1-based while training), step and total steps. */
export interface CaptionState {
  epoch: number;
  step: number;
  maxTrainSteps: number;
}

/**
 * The caption as kohya feeds it to the tokenizer. `token_warmup_step` below 1 means that fraction
 * of `maxTrainSteps` (kohya rewrites the subset's value on first use; the result is the same).
 */
export function processCaption(
  settings: CaptionSettings,
  caption: string,
  state: CaptionState,
  rng: Random,
): string {
  const s = settings;
  if (s.caption_prefix) caption = s.caption_prefix + " " + caption;
  if (s.caption_suffix) caption = caption + " " + s.caption_suffix;

  // Python: a or (b and c); the generator is consumed only when the rate is positive.
  let drop = s.caption_dropout_rate > 0 && rng() < s.caption_dropout_rate;
  drop = drop ||
    (s.caption_dropout_every_n_epochs > 0 && state.epoch % s.caption_dropout_every_n_epochs === 0);
  if (drop) return "";

  caption = s.enable_wildcard ? expandWildcards(caption, rng) : caption.split("\n")[0];

  const warmupStep = s.token_warmup_step < 1
    ? Math.floor(s.token_warmup_step * state.maxTrainSteps)
    : s.token_warmup_step;
  if (s.shuffle_caption || warmupStep > 0 || s.caption_tag_dropout_rate > 0) {
    const sep = s.caption_separator;
    const split = (text: string) => text.split(sep).map(strip).filter((t) => t.length > 0);
    let fixed: string[] = [];
    let flex: string[];
    let fixedSuffix: string[] = [];
    const kts = s.keep_tokens_separator;
    if (kts && caption.includes(kts)) {
      const at = caption.indexOf(kts);
      const fixedPart = caption.slice(0, at);
      let flexPart = caption.slice(at + kts.length);
      if (flexPart.includes(kts)) {
        const at2 = flexPart.indexOf(kts);
        fixedSuffix = split(flexPart.slice(at2 + kts.length));
        flexPart = flexPart.slice(0, at2);
      }
      fixed = split(fixedPart);
      flex = split(flexPart);
    } else {
      // kohya keeps empty tags here (no filter), unlike the separator branch above.
      const tokens = strip(caption).split(sep).map(strip);
      flex = tokens.slice();
      if (s.keep_tokens > 0) {
        fixed = flex.slice(0, s.keep_tokens);
        flex = tokens.slice(s.keep_tokens);
      }
    }
    if (warmupStep && state.step < warmupStep) {
      const len = Math.floor(state.step * ((flex.length - s.token_warmup_min) / warmupStep)) +
        s.token_warmup_min;
      flex = pySliceTo(flex, len);
    }
    if (s.shuffle_caption) shuffleInPlace(flex, rng);
    if (s.caption_tag_dropout_rate > 0) {
      flex = flex.filter(() => rng() >= s.caption_tag_dropout_rate);
    }
    // kohya joins with ", " whatever the separator is.
    caption = [...fixed, ...flex, ...fixedSuffix].join(", ");
  }
  if (s.secondary_separator) {
    caption = caption.split(s.secondary_separator).join(s.caption_separator);
  }
  return caption;
}

/**
 * kohya's wildcard handling: a multi-line caption picks one line at random, `{a|b|c}` picks one
 * option at random (left to right), and `{{` / `}}` are literal braces.
 */
export function expandWildcards(caption: string, rng: Random): string {
  if (caption.includes("\n")) caption = choice(caption.split("\n"), rng);
  let open = "⦅";
  let close = "⦆";
  while (caption.includes(open) || caption.includes(close)) {
    open += "⦅";
    close += "⦆";
  }
  caption = caption.split("{{").join(open).split("}}").join(close);
  caption = caption.replace(/\{([^}]+)\}/g, (_m, body: string) => choice(body.split("|"), rng));
  return caption.split(open).join("{").split(close).join("}");
}

/** Python's `random.choice`. */
function choice<T>(items: T[], rng: Random): T {
  return items[Math.min(items.length - 1, Math.floor(rng() * items.length))];
}

/** Python's `str.strip()` (Unicode whitespace). */
function strip(text: string): string {
  return text.trim();
}

/** Python's `items[:end]`, negative ends counting from the back. */
function pySliceTo<T>(items: T[], end: number): T[] {
  return items.slice(0, end < 0 ? Math.max(0, items.length + end) : end);
}

/**
 * kohya's `set_tag_frequency` for one folder (metadata `ss_tag_frequency`): each caption split on
 * "," (always a comma, whatever `caption_separator` is), trimmed, lower-cased, empty tags skipped,
 * counted into `into` (created when absent, without a prototype so that tags such as
 * "constructor" count like any other).
 */
export function countTagFrequency(
  captions: Iterable<string>,
  into: Record<string, number> = Object.create(null),
): Record<string, number> {
  for (const caption of captions) {
    for (const raw of caption.split(",")) {
      const tag = raw.trim();
      if (tag) {
        const key = tag.toLowerCase();
        into[key] = (into[key] ?? 0) + 1;
      }
    }
  }
  return into;
}
