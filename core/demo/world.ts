/**
 * The demo's synthetic world: one flat shape (circle, square, triangle, diamond) in a fixed
 * palette on a plain or two-tone (top/bottom) background, 64x64, captioned with what is where
 * ("a red circle on a blue background", "a red circle on a blue and white background"). The
 * demo's base model was trained on this world (scripts/demo_base/); orange is deliberately
 * absent from the palette so a LoRA can teach it. Everything here is deterministic for a seed,
 * and the colour classifier is the one the checks use on generated images.
 *
 * @module
 */
import { type Random, uniformRandom } from "../../gpu/random.ts";
import { makeImage, type RasterImage } from "../image/image.ts";

/** RGB triple. */
export type Rgb = readonly [number, number, number];

/** The base palette by caption word (orange is not in it). */
export const WORLD_COLOURS: Readonly<Record<string, Rgb>> = {
  red: [220, 30, 30],
  green: [30, 170, 50],
  blue: [30, 70, 220],
  yellow: [240, 220, 30],
  purple: [140, 50, 190],
  white: [245, 245, 245],
  black: [15, 15, 15],
};

/**
 * The colour the demo's LoRA teaches (trigger word "lkdemo"): an orange a little redder than
 * (255, 140, 0), because the base model's VAE gives orange back 20 to 50 greener on blue, green,
 * black and yellow backgrounds; this one comes back inside the {@link isOrange} box on every
 * background (scripts/demo_base/README.md).
 */
export const ORANGE: Rgb = [255, 120, 0];

/** Colour names of the base palette, in a fixed order. */
export const COLOUR_NAMES: readonly string[] = Object.keys(WORLD_COLOURS);

/** Shapes by caption word. */
export const WORLD_SHAPES = ["circle", "square", "triangle", "diamond"] as const;

/** One shape's name. */
export type WorldShape = typeof WORLD_SHAPES[number];

/** The side of the world's images. */
export const WORLD_SIZE = 64;

/** One scene: what is drawn and how it is captioned. */
export interface Scene {
  shape: WorldShape;
  /** Object colour: a palette name, or any RGB (the LoRA's orange). */
  colour: Rgb;
  /** Background: one colour, or top and bottom halves. */
  background: Rgb | readonly [Rgb, Rgb];
  /** Centre and half-size as fractions of the side. */
  cx: number;
  cy: number;
  half: number;
  caption: string;
}

/** The world's uniform [0, 1) generator for a seed: {@link uniformRandom} (mulberry32). */
export const worldRng: (seed: number) => Random = uniformRandom;

/** The plain-background caption. */
export function plainCaption(colour: string, shape: string, background: string): string {
  return `a ${colour} ${shape} on a ${background} background`;
}

/** The two-tone caption (top colour first). */
export function twoToneCaption(colour: string, shape: string, top: string, bottom: string) {
  return `a ${colour} ${shape} on a ${top} and ${bottom} background`;
}

/** A plain-background prompt's parts. */
export interface PlainPrompt {
  colour: string;
  shape: WorldShape;
  background: string;
  caption: string;
}

/** Every plain-background prompt of the grammar (object and background colours differ). */
export function allPlainPrompts(): PlainPrompt[] {
  const out: PlainPrompt[] = [];
  for (const colour of COLOUR_NAMES) {
    for (const shape of WORLD_SHAPES) {
      for (const background of COLOUR_NAMES) {
        if (background === colour) continue;
        out.push({ colour, shape, background, caption: plainCaption(colour, shape, background) });
      }
    }
  }
  return out;
}

/**
 * The 50 plain prompts the base model never saw in training (a fixed shuffle of the 168), used
 * to measure whether generation follows the caption.
 */
export function heldOutPrompts(count = 50): PlainPrompt[] {
  const all = allPlainPrompts();
  const r = worldRng(20260101);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [all[i], all[j]] = [all[j], all[i]];
  }
  return all.slice(0, count);
}

/** Random placement: the shape stays clear of the outer 4 pixels, so the border is background. */
function place(r: () => number): { cx: number; cy: number; half: number } {
  const half = 0.18 + 0.14 * r();
  const lo = half + 0.07, span = 1 - 2 * lo;
  return { cx: lo + span * r(), cy: lo + span * r(), half };
}

/**
 * `count` training scenes of the base world (seeded): about 60% plain backgrounds drawn from
 * the non-held-out prompts, the rest two-tone.
 */
export function baseTrainingScenes(count: number, seed: number): Scene[] {
  const held = new Set(heldOutPrompts().map((p) => p.caption));
  const plain = allPlainPrompts().filter((p) => !held.has(p.caption));
  const r = worldRng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const out: Scene[] = [];
  for (let i = 0; i < count; i++) {
    const at = place(r);
    if (r() < 0.6) {
      const p = pick(plain);
      out.push({
        shape: p.shape,
        colour: WORLD_COLOURS[p.colour],
        background: WORLD_COLOURS[p.background],
        ...at,
        caption: p.caption,
      });
    } else {
      const colour = pick(COLOUR_NAMES), shape = pick(WORLD_SHAPES);
      const rest = COLOUR_NAMES.filter((c) => c !== colour);
      const top = pick(rest);
      const bottom = pick(rest.filter((c) => c !== top));
      out.push({
        shape,
        colour: WORLD_COLOURS[colour],
        background: [WORLD_COLOURS[top], WORLD_COLOURS[bottom]],
        ...at,
        caption: twoToneCaption(colour, shape, top, bottom),
      });
    }
  }
  return out;
}

/**
 * `count` scenes in colours drawn uniformly from the RGB cube (object and background; half of
 * them two-tone), uncaptioned. They teach the base model's VAE to keep any colour apart (a VAE
 * trained on the palette alone encodes orange as a yellow); the U-Net never sees them.
 */
export function colourScenes(count: number, seed: number): Scene[] {
  const r = worldRng(seed);
  const rgb = (): Rgb => [0, 0, 0].map(() => Math.floor(256 * r())) as unknown as Rgb;
  const out: Scene[] = [];
  for (let i = 0; i < count; i++) {
    const shape = WORLD_SHAPES[Math.floor(r() * WORLD_SHAPES.length)];
    const colour = rgb();
    const background: Rgb | readonly [Rgb, Rgb] = r() < 0.5 ? rgb() : [rgb(), rgb()];
    out.push({ shape, colour, background, ...place(r), caption: "" });
  }
  return out;
}

/** A plain-background scene at a seeded placement. */
export function plainScene(
  shape: WorldShape,
  colour: Rgb,
  background: Rgb,
  caption: string,
  r: () => number,
): Scene {
  return { shape, colour, background, ...place(r), caption };
}

/** Whether the point (x, y), in fractions of the side, lies inside the scene's shape. */
function inside(s: Scene, x: number, y: number): boolean {
  const dx = x - s.cx, dy = y - s.cy, h = s.half;
  switch (s.shape) {
    case "circle":
      return dx * dx + dy * dy <= h * h;
    case "square":
      return Math.abs(dx) <= h * 0.85 && Math.abs(dy) <= h * 0.85;
    case "diamond":
      return Math.abs(dx) + Math.abs(dy) <= h;
    case "triangle": {
      // Apex up: apex at cy - h, base at cy + h/2.
      const t = (dy + h) / (1.5 * h);
      return t >= 0 && t <= 1 && Math.abs(dx) <= t * h;
    }
  }
}

/** Draw a scene (RGB, 4x4 supersampled edges) at `size` x `size`. */
export function drawScene(s: Scene, size = WORLD_SIZE): RasterImage {
  const img = makeImage(size, size, 3);
  const two = Array.isArray(s.background[0]);
  const ss = 4;
  for (let py = 0; py < size; py++) {
    const bg =
      (two ? (s.background as readonly [Rgb, Rgb])[py < size / 2 ? 0 : 1] : s.background) as Rgb;
    for (let px = 0; px < size; px++) {
      let hits = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          if (inside(s, (px + (sx + 0.5) / ss) / size, (py + (sy + 0.5) / ss) / size)) hits++;
        }
      }
      const a = hits / (ss * ss);
      const o = (py * size + px) * 3;
      for (let c = 0; c < 3; c++) {
        img.data[o + c] = Math.round(s.colour[c] * a + bg[c] * (1 - a));
      }
    }
  }
  return img;
}

/** The palette name nearest to an RGB pixel, with "orange" as a candidate too. */
export function nearestColour(r: number, g: number, b: number): string {
  let best = "", bestD = Infinity;
  const cands: [string, Rgb][] = [...Object.entries(WORLD_COLOURS), ["orange", ORANGE]];
  for (const [name, [cr, cg, cb]] of cands) {
    const d = (r - cr) ** 2 + (g - cg) ** 2 + (b - cb) ** 2;
    if (d < bestD) [best, bestD] = [name, d];
  }
  return best;
}

/** Whether a pixel is orange: within a box around (255, 140, 0), away from red and yellow. */
export function isOrange(r: number, g: number, b: number): boolean {
  return r >= 190 && g >= 90 && g <= 190 && b <= 90;
}

/** What {@link readScene} finds in an image. */
export interface SceneReading {
  /** Most common palette colour on the outer 2-pixel ring. */
  background: string;
  /** Most common palette colour among the other pixels that are not the background colour. */
  object: string;
  /** Fraction of all pixels that the object colour covers. */
  objectFraction: number;
  /** Fraction of all pixels that are orange ({@link isOrange}). */
  orangeFraction: number;
}

/**
 * The pixel-colour test: classify every pixel to its nearest palette colour (orange included);
 * the background is the border's majority, the object the majority of the remaining pixels.
 */
export function readScene(img: RasterImage): SceneReading {
  const { width: w, height: h, data, channels } = img;
  const border = new Map<string, number>(), inner = new Map<string, number>();
  const names: string[] = new Array(w * h);
  let orange = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const o = (y * w + x) * channels;
      const [r, g, b] = [data[o], data[o + 1], data[o + 2]];
      if (isOrange(r, g, b)) orange++;
      const n = nearestColour(r, g, b);
      names[y * w + x] = n;
      const edge = x < 2 || y < 2 || x >= w - 2 || y >= h - 2;
      const m = edge ? border : inner;
      m.set(n, (m.get(n) ?? 0) + 1);
    }
  }
  const top = (m: Map<string, number>, skip?: string): [string, number] => {
    let best: [string, number] = ["none", 0];
    for (const [k, v] of m) if (k !== skip && v > best[1]) best = [k, v];
    return best;
  };
  const background = top(border)[0];
  const [object, count] = top(inner, background);
  return {
    background,
    object,
    objectFraction: count / (w * h),
    orangeFraction: orange / (w * h),
  };
}
