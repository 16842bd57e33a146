/**
 * SDXL's text encoder output cache (kohya's `--cache_text_encoder_outputs`): with the text
 * encoders frozen and every caption fixed, each image's caption is encoded once before training
 * — its context rows (both encoders' penultimate states) and TE2's pooled embedding — and the
 * steps read them instead of running the encoders. With `--cache_text_encoder_outputs_to_disk`
 * they are also kept beside each image (`<image>.lorakit-te-outputs.safetensors`, recording the
 * caption and the model) and read back on the next run when both still match.
 *
 * @module
 */
import { noGrad, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { checkWritableDir, dirName, exists, isDirectory } from "../io/fs.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import {
  type CachedTextOutputs,
  encodeSdxlWindows,
  textCacheKey,
  type TextOutputCache,
} from "./sdxl_text.ts";

export { textCacheKey, type TextOutputCache };
import type { StableDiffusionXL } from "../models/stable_diffusion_xl.ts";
import { windowIds } from "../text/token_windows.ts";
import { processCaption } from "./captions.ts";
import type { PreparedData } from "./train_setup.ts";

/** The disk cache file of an image. */
export function textOutputsCachePath(imagePath: string): string {
  const dot = imagePath.lastIndexOf(".");
  const stem = dot > imagePath.lastIndexOf("/") ? imagePath.slice(0, dot) : imagePath;
  return `${stem}.lorakit-te-outputs.safetensors`;
}

/**
 * kohya's `is_text_encoder_output_cacheable`: a caption that changes between steps cannot be
 * cached. Throws naming the dataset and subset.
 */
export function checkTextOutputsCacheable(data: PreparedData, where: string): void {
  for (const [i, d] of data.datasets.entries()) {
    for (const [j, s] of d.blueprint.subsets.entries()) {
      const random = [
        ["caption_dropout_rate", s.caption_dropout_rate > 0],
        ["caption_dropout_every_n_epochs", s.caption_dropout_every_n_epochs > 0],
        ["shuffle_caption", s.shuffle_caption],
        ["token_warmup_step", s.token_warmup_step > 0],
        ["caption_tag_dropout_rate", s.caption_tag_dropout_rate > 0],
        ["enable_wildcard", s.enable_wildcard],
      ].find(([, on]) => on);
      if (random) {
        throw new LorakitError(
          `--cache_text_encoder_outputs: ${where}: datasets[${i}].subsets[${j}] sets ` +
            `${
              random[0]
            }, so its captions change between steps and cannot be cached (kohya's rule)`,
        );
      }
    }
  }
}

/** With the disk cache: check every folder that will get a new cache file is writable. */
export async function checkTextOutputsFolders(data: PreparedData): Promise<void> {
  const folders = new Set<string>();
  for (const d of data.datasets) {
    for (const im of d.scan.images) {
      const path = textOutputsCachePath(im.path);
      if (await isDirectory(path)) {
        throw new LorakitError(
          `--cache_text_encoder_outputs_to_disk: cannot write there: ${path}: a folder of that ` +
            `name is in the way`,
        );
      }
      if (!(await exists(path))) folders.add(dirName(im.path));
    }
  }
  for (const f of folders) await checkWritableDir(f, "--cache_text_encoder_outputs_to_disk");
}

async function readCached(path: string, caption: string, model: string) {
  if (!(await exists(path))) return null;
  try {
    const f = await openSafetensors(path);
    try {
      if (f.metadata.caption !== caption || f.metadata.model !== model) return null;
      const context = await f.readF32("context");
      return {
        context: context.data,
        rows: context.shape[0],
        pooled: (await f.readF32("pooled")).data,
      };
    } finally {
      f.close();
    }
  } catch (e) {
    if (e instanceof LorakitError) return null; // damaged: recompute
    throw e;
  }
}

/** Encode every image's (fixed) caption once; returns the cache and how many were computed. */
export async function cacheTextOutputs(
  sd: StableDiffusionXL,
  data: PreparedData,
  o: { toDisk: boolean; modelId: string; maxTokenLength: number | null; batchSize?: number },
): Promise<{ cache: TextOutputCache; computed: number; reused: number }> {
  const cache: TextOutputCache = new Map();
  const state = { epoch: 1, step: 0, maxTrainSteps: 1 };
  const todo: { caption: string; paths: string[] }[] = [];
  const byCaption = new Map<string, string[]>();
  let reused = 0;
  for (const d of data.datasets) {
    for (const im of d.scan.images) {
      // No randomness is left in a cacheable caption (checkTextOutputsCacheable).
      const caption = processCaption(d.blueprint.subsets[im.subset], im.caption, state, () => 0);
      const paths = byCaption.get(caption) ?? [];
      paths.push(im.path);
      byCaption.set(caption, paths);
    }
  }
  const key = (caption: string) => {
    const a = windowIds(sd.tokenizer, [caption], o.maxTokenLength).ids;
    const b = windowIds(sd.tokenizer2, [caption], o.maxTokenLength).ids;
    return textCacheKey(a, b, 0, 1);
  };
  for (const [caption, paths] of byCaption) {
    if (o.toDisk) {
      const hit = await readCached(textOutputsCachePath(paths[0]), caption, o.modelId);
      if (hit) {
        cache.set(key(caption), hit);
        reused++;
        // Images sharing the caption get the file too.
        const missing = [];
        for (const p of paths.slice(1)) {
          if (!(await exists(textOutputsCachePath(p)))) missing.push(p);
        }
        if (missing.length > 0) await writeFiles(missing, caption, hit, o.modelId);
        continue;
      }
    }
    todo.push({ caption, paths });
  }
  const batch = Math.max(1, o.batchSize ?? 8);
  for (let at = 0; at < todo.length; at += batch) {
    const part = todo.slice(at, at + batch);
    const captions = part.map((t) => t.caption);
    const ids1 = windowIds(sd.tokenizer, captions, o.maxTokenLength).ids;
    const ids2 = windowIds(sd.tokenizer2, captions, o.maxTokenLength).ids;
    const { context, pooled } = noGrad(() => encodeSdxlWindows(sd, ids1, ids2, part.length));
    let host: Float32Array[];
    try {
      host = await Tensor.readAll([context, pooled]);
    } finally {
      context.dispose();
      pooled.dispose();
    }
    const c = context.shape[1] * context.shape[2], p = pooled.shape[1];
    for (const [i, t] of part.entries()) {
      const out = {
        context: host[0].slice(i * c, (i + 1) * c),
        rows: context.shape[1],
        pooled: host[1].slice(i * p, (i + 1) * p),
      };
      cache.set(textCacheKey(ids1, ids2, i, part.length), out);
      if (o.toDisk) await writeFiles(t.paths, t.caption, out, o.modelId);
    }
  }
  return { cache, computed: todo.length, reused };
}

async function writeFiles(
  paths: string[],
  caption: string,
  out: CachedTextOutputs,
  model: string,
): Promise<void> {
  for (const path of paths) {
    await writeSafetensors(textOutputsCachePath(path), [
      {
        name: "context",
        dtype: "F32",
        shape: [out.rows, out.context.length / out.rows],
        data: out.context,
      },
      { name: "pooled", dtype: "F32", shape: [out.pooled.length], data: out.pooled },
    ], { format: "lorakit-te-outputs-1", caption, model });
  }
}
