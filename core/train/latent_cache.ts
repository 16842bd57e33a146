/**
 * `--cache_latents` / `--cache_latents_to_disk`: every training image through the VAE once, before
 * training, as kohya's `cache_latents` does — images grouped by bucket, `--vae_batch_size` at a
 * time, a sample of the latent distribution times 0.18215, and with `flip_aug` the mirrored
 * image's latents too.
 *
 * On disk each image gets `<image stem>.lorakit-latents.safetensors` beside it (kohya writes
 * `.npz`; the formats differ, so neither reads the other's). A file is reused only while it
 * matches: the image's SHA-256, its bucket and resize size, the flip setting and the VAE all
 * recorded in its metadata must equal the current ones; otherwise it is recomputed and rewritten
 * (atomically). `--skip_cache_check` trusts any file whose bucket matches.
 *
 * @module
 */
import { noGrad, scope, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { sha256Hex } from "../io/hashes.ts";
import { exists, readBytes } from "../io/fs.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import type { Size } from "./buckets.ts";
import { type CachedLatents, imageToTensorData, loadBucketImage } from "./data_loader.ts";
import type { ImageEntry } from "./dataset_scan.ts";
import { dropImages, type PreparedData } from "./train_setup.ts";
import type { TrainPlan } from "../kohya/plan_types.ts";
import { hashString, STREAM, streamGaussian } from "./train_rng.ts";
import type { Interpolation } from "../image/resample_tables.ts";

/** SD 1.x/2.x latent scale. */
export const LATENT_SCALE = 0.18215;

/** What the cache needs from a VAE. */
export interface EncoderVae {
  encode(images: Tensor): { mean: Tensor; logvar: Tensor };
  readonly dtype: Tensor["dtype"];
  /** The latent scale (default SD's 0.18215; kohya's SDXL trainer uses 0.13025). */
  readonly latentScale?: number;
}

/** Options of {@link cacheLatents}. */
export interface LatentCacheOptions {
  seed: number;
  vaeBatchSize: number;
  toDisk: boolean;
  skipCheck: boolean;
  /** Identifies the VAE (e.g. its file and size); part of a disk file's validity. */
  vaeId: string;
  interpolation?: Interpolation;
  onProgress?: (done: number, total: number) => void;
}

/** What {@link cacheLatents} did. */
export interface LatentCacheResult {
  cache: Map<string, CachedLatents>;
  reused: number;
  computed: number;
  /** Images that failed to decode (to be dropped from the datasets). */
  failed: { datasetIndex: number; key: string; reason: string }[];
}

/** The disk cache file of an image. */
export function latentCachePath(imagePath: string): string {
  const dot = imagePath.lastIndexOf(".");
  const stem = dot > imagePath.lastIndexOf("/") ? imagePath.slice(0, dot) : imagePath;
  return `${stem}.lorakit-latents.safetensors`;
}

const sizeText = (s: Size) => `${s[0]}x${s[1]}`;

interface Want {
  image_sha256: string;
  bucket: string;
  resized: string;
  flip: string;
  vae: string;
}

async function wantedMetadata(im: ImageEntry, flip: boolean, vaeId: string): Promise<Want> {
  return {
    image_sha256: await sha256Hex(await readBytes(im.path)),
    bucket: sizeText(im.bucket!),
    resized: sizeText(im.resized!),
    flip: flip ? "True" : "False",
    vae: vaeId,
  };
}

/** Read a disk cache file if it matches `want` (or, skipping checks, its bucket). */
async function readIfValid(
  path: string,
  want: Want,
  skipCheck: boolean,
): Promise<CachedLatents | null> {
  if (!(await exists(path))) return null;
  try {
    const f = await openSafetensors(path);
    try {
      const md = f.metadata;
      const keys = skipCheck ? ["bucket"] : Object.keys(want);
      if (keys.some((k) => md[k] !== want[k as keyof Want])) return null;
      const latents = (await f.readF32("latents")).data;
      const flipped = want.flip === "True" ? (await f.readF32("latents_flipped")).data : null;
      return { latents, flipped };
    } finally {
      f.close();
    }
  } catch (e) {
    if (e instanceof LorakitError) return null; // damaged: recompute
    throw e;
  }
}

/** VAE moments -> a latent sample times the scale, on the host. */
function sampleLatents(
  mean: Float32Array,
  logvar: Float32Array,
  seed: number,
  key: string,
  flip: boolean,
  scale: number,
): Float32Array {
  const g = streamGaussian(seed, STREAM.latentSample, hashString(key), flip ? 1 : 0);
  const out = new Float32Array(mean.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = (mean[i] + Math.exp(0.5 * logvar[i]) * g.nextGaussian()) * scale;
  }
  return out;
}

/** Encode [n, 3, H, W] images; returns one latent sample per image (and flipped copies). */
async function encodeBatch(
  vae: EncoderVae,
  pixels: Float32Array,
  shape: [number, number, number, number],
): Promise<{ mean: Float32Array; logvar: Float32Array }> {
  const { mean, logvar } = noGrad(() =>
    scope(() => vae.encode(Tensor.fromArray(pixels, shape, vae.dtype)))
  );
  try {
    return { mean: await mean.toArray(), logvar: await logvar.toArray() };
  } finally {
    mean.dispose();
    logvar.dispose();
  }
}

/** Cache the latents of every image of every dataset. */
export async function cacheLatents(
  vae: EncoderVae,
  data: PreparedData,
  o: LatentCacheOptions,
): Promise<LatentCacheResult> {
  const result: LatentCacheResult = { cache: new Map(), reused: 0, computed: 0, failed: [] };
  const total = data.datasets.reduce((a, d) => a + d.scan.images.length, 0);
  let done = 0;
  for (const [datasetIndex, d] of data.datasets.entries()) {
    const groups = new Map<string, ImageEntry[]>();
    for (const im of d.scan.images) {
      const k = sizeText(im.bucket!);
      groups.set(k, [...(groups.get(k) ?? []), im]);
    }
    for (const images of groups.values()) {
      const [bw, bh] = images[0].bucket!;
      for (let at = 0; at < images.length; at += o.vaeBatchSize) {
        const todo: { im: ImageEntry; flip: boolean; want: Want | null; px: Float32Array }[] = [];
        for (const im of images.slice(at, at + o.vaeBatchSize)) {
          const flip = d.blueprint.subsets[im.subset].flip_aug;
          const want = o.toDisk ? await wantedMetadata(im, flip, o.vaeId) : null;
          if (want) {
            const hit = await readIfValid(latentCachePath(im.path), want, o.skipCheck);
            if (hit) {
              result.cache.set(im.key, hit);
              result.reused++;
              continue;
            }
          }
          try {
            const img = await loadBucketImage(im.path, im.resized!, im.bucket!, {
              interpolation: o.interpolation,
            });
            const px = new Float32Array((flip ? 2 : 1) * 3 * bw * bh);
            imageToTensorData(img, false, px, 0);
            if (flip) imageToTensorData(img, true, px, 3 * bw * bh);
            todo.push({ im, flip, want, px });
          } catch (e) {
            if (!(e instanceof LorakitError)) throw e;
            result.failed.push({ datasetIndex, key: im.key, reason: e.message });
          }
        }
        if (todo.length > 0) await encodeAndStore(vae, todo, [bw, bh], o, result);
        done += Math.min(o.vaeBatchSize, images.length - at);
        o.onProgress?.(done, total);
      }
    }
  }
  return result;
}

async function encodeAndStore(
  vae: EncoderVae,
  todo: { im: ImageEntry; flip: boolean; want: Want | null; px: Float32Array }[],
  [bw, bh]: Size,
  o: LatentCacheOptions,
  result: LatentCacheResult,
): Promise<void> {
  const count = todo.reduce((a, t) => a + (t.flip ? 2 : 1), 0);
  const pixels = new Float32Array(count * 3 * bw * bh);
  let at = 0;
  for (const t of todo) {
    pixels.set(t.px, at);
    at += t.px.length;
  }
  const { mean, logvar } = await encodeBatch(vae, pixels, [count, 3, bh, bw]);
  const per = 4 * (bh / 8) * (bw / 8);
  let row = 0;
  for (const t of todo) {
    const take = (flip: boolean) => {
      const s = row * per;
      row++;
      return sampleLatents(
        mean.subarray(s, s + per),
        logvar.subarray(s, s + per),
        o.seed,
        t.im.key,
        flip,
        vae.latentScale ?? LATENT_SCALE,
      );
    };
    const latents = take(false);
    const flipped = t.flip ? take(true) : null;
    result.cache.set(t.im.key, { latents, flipped });
    result.computed++;
    if (t.want) {
      const shape = [4, bh / 8, bw / 8];
      const tensors = [{ name: "latents", dtype: "F32" as const, shape, data: latents }];
      if (flipped) tensors.push({ name: "latents_flipped", dtype: "F32", shape, data: flipped });
      await writeSafetensors(latentCachePath(t.im.path), tensors, {
        format: "lorakit-latents-1",
        ...t.want,
      });
    }
  }
}

/**
 * Latents of a batch of decoded images [n, 3, H, W] (no cache): the VAE, then a seeded sample
 * of each image's latent distribution times the latent scale.
 */
export async function encodeImagesToLatents(
  vae: EncoderVae,
  pixels: Float32Array,
  n: number,
  [bw, bh]: Size,
  seed: number,
  keys: readonly string[],
  micro: number,
): Promise<Float32Array> {
  const { mean, logvar } = await encodeBatch(vae, pixels, [n, 3, bh, bw]);
  const scale = vae.latentScale ?? LATENT_SCALE;
  const per = 4 * (bh / 8) * (bw / 8);
  const out = new Float32Array(n * per);
  for (let i = 0; i < n; i++) {
    const s = i * per;
    const g = streamGaussian(seed, STREAM.latentSample, hashString(keys[i]), micro);
    for (let j = 0; j < per; j++) {
      out[s + j] = (mean[s + j] + Math.exp(0.5 * logvar[s + j]) * g.nextGaussian()) * scale;
    }
  }
  return out;
}

/**
 * The run's latent cache: every image encoded once (or read from its disk cache), images that
 * fail left out of the datasets with a note each.
 */
export async function cacheRunLatents(
  vae: EncoderVae,
  data: PreparedData,
  plan: Pick<TrainPlan, "data" | "model">,
  seed: number,
  note: (message: string) => void,
): Promise<Map<string, CachedLatents>> {
  const c = await cacheLatents(vae, data, {
    seed,
    vaeBatchSize: Math.max(1, plan.data.vaeBatchSize),
    toDisk: plan.data.cacheLatentsToDisk,
    skipCheck: plan.data.skipCacheCheck,
    vaeId: plan.model.vae ?? plan.model.path,
  });
  for (const f of c.failed) {
    note(`skipped ${f.key}: ${f.reason}`);
    dropImages(data.datasets[f.datasetIndex], new Set([f.key]));
  }
  note(`latents: ${c.computed} computed, ${c.reused} reused from disk`);
  return c.cache;
}
