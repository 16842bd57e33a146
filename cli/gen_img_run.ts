/**
 * The run shared by `lorakit gen_img` (SD 1.x/2.x) and `lorakit sdxl_gen_img`: check every
 * input before the output folder is touched (that it can be written, files, flags, prompt
 * options, sizes, seeds), plan the batches, load the model through the tool's backend (models,
 * conditioning step, networks), generate, and write each PNG (temporary name, then rename) with
 * A1111's `parameters` text and kohya's keys.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { encodePng } from "../core/image/encode.ts";
import { checkWritableDir, exists, joinPath, makeDir, writeFileAtomic } from "../core/io/fs.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../core/lora/network.ts";
import {
  fileStem,
  firstAvailableFileName,
  outputFileName,
  timestampString,
} from "../core/sample/file_naming.ts";
import { generateBatch, type GeneratedImage, type GenModels } from "../core/sample/gen_loop.ts";
import { planGeneration, type SizeConditioning } from "../core/sample/gen_plan.ts";
import { formatInfotext, type InfotextLora } from "../core/sample/infotext.ts";
import { initGpu } from "../gpu/mod.ts";
import type { GenImgArgs } from "./gen_img_args.ts";
import {
  loadInitImages,
  mustExist,
  type NetworkSpec,
  networkSpecs,
  promptLines,
} from "./gen_img_inputs.ts";

/** A model loaded for a run. */
export interface LoadedGenModel {
  models: GenModels;
  /** Applied (not merged) networks, in `--network_weights` order. */
  networks: LoraNetwork[];
  vPrediction: boolean;
  /** The clip skip recorded in the infotext (and used by SD 1.x/2.x's conditioning). */
  clipSkip: number;
  /** kohya's extra PNG text keys of an image (SDXL's size conditioning). */
  extraText?: (img: GeneratedImage) => Record<string, string>;
  dispose(): void;
}

/** What differs between gen_img and sdxl_gen_img. */
export interface GenBackend {
  /** `--W`/`--H` default (kohya: 512, SDXL 1024). */
  defaultSize: number;
  /** SDXL: the run's size conditioning flags (see `planGeneration`). */
  sdxlSize?: SizeConditioning;
  /** Checks before anything is loaded (e.g. flags the model kind does not take). */
  check?(a: GenImgArgs, specs: NetworkSpec[]): Promise<void>;
  /** Load the models and the networks. */
  load(a: GenImgArgs, specs: NetworkSpec[]): Promise<LoadedGenModel>;
}

/** Python's `str(float)` for kohya's text keys. */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** Progress on stderr: one rewritten bar on a terminal, one line per finished pass otherwise. */
function progressBar(label: string, done: number, total: number): void {
  const width = 24, filled = Math.round((done / total) * width);
  const text = `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total}`;
  const enc = new TextEncoder();
  if (Deno.stderr.isTerminal()) {
    Deno.stderr.writeSync(enc.encode(`\r\x1b[K${text}${done === total ? "\n" : ""}`));
  } else if (done === total) Deno.stderr.writeSync(enc.encode(`${text}\n`));
}

/** Load, merge or apply each network (errors name the file; nothing stays applied on error). */
export async function loadNetworks(
  specs: NetworkSpec[],
  sd: Parameters<typeof createNetworkFromWeights>[2],
  showMeta: boolean,
): Promise<LoraNetwork[]> {
  const applied: LoraNetwork[] = [];
  try {
    for (const s of specs) {
      if (s.path.toLowerCase().endsWith(".safetensors")) {
        const f = await openSafetensors(s.path);
        const meta = f.metadata;
        f.close();
        if (meta.sshs_model_hash) s.hash = meta.sshs_model_hash.slice(0, 12);
        if (showMeta) console.log(`metadata for: ${s.path}: ${JSON.stringify(meta)}`);
      }
      const net = await createNetworkFromWeights(s.multiplier, s.path, sd);
      if (s.merged) {
        net.mergeTo(sd);
        net.dispose();
        console.error(`merged ${s.path} (x${s.multiplier})`);
      } else {
        net.applyTo(sd);
        applied.push(net);
        console.error(`applied ${s.path} (x${s.multiplier})`);
      }
    }
    return applied;
  } catch (e) {
    for (const n of applied) n.dispose();
    throw e;
  }
}

/** The PNG text of one image: A1111's `parameters`, then kohya's keys. */
function pngText(
  a: GenImgArgs,
  img: GeneratedImage,
  loras: InfotextLora[],
  loaded: LoadedGenModel,
): Record<string, string> {
  const { job } = img;
  const set = job.settings;
  const parameters = formatInfotext({
    prompt: job.prompt,
    negativePrompt: job.negativePrompt,
    steps: img.steps,
    sampler: a.sampler,
    cfgScale: set.scale,
    seed: job.seed,
    width: img.image.width,
    height: img.image.height,
    model: fileStem(a.ckpt!.replace(/[/\\]+$/, "")),
    clipSkip: loaded.clipSkip,
    denoisingStrength: img.strength ?? undefined,
    negativeScale: set.negativeScale,
    loras,
    version: "lorakit",
  });
  const text: Record<string, string> = {
    parameters,
    prompt: job.prompt,
    seed: String(job.seed),
    sampler: a.sampler,
    steps: String(img.steps),
    scale: pyFloat(set.scale),
    "negative-prompt": job.negativePrompt,
  };
  if (set.negativeScale !== null) text["negative-scale"] = pyFloat(set.negativeScale);
  text["raw-prompt"] = job.rawPrompt;
  return { ...text, ...loaded.extraText?.(img) };
}

/** Run a generation with a tool's backend; returns the exit code. */
export async function runGeneration(a: GenImgArgs, backend: GenBackend): Promise<number> {
  const t0 = performance.now();
  // Images are written only after the model is loaded and the first batch generated.
  await checkWritableDir(a.outdir, "--outdir");
  await mustExist(a.ckpt!, "--ckpt");
  if (a.vae !== null) await mustExist(a.vae, "--vae");
  const specs = networkSpecs(a);
  for (const s of specs) await mustExist(s.path, "--network_weights");
  await backend.check?.(a, specs);
  const highres = a.highres_fix_scale !== null;
  if (highres && !(a.highres_fix_scale! > 0)) {
    throw new LorakitError(
      `--highres_fix_scale: expected a positive scale, found ${a.highres_fix_scale}`,
    );
  }
  const inits = a.image_path !== null ? await loadInitImages(a, highres) : null;
  const lines = await promptLines(a, inits);
  const applied = specs.filter((s) => !s.merged);
  const batches = planGeneration(lines, {
    width: a.W ?? backend.defaultSize,
    height: a.H ?? backend.defaultSize,
    steps: a.steps,
    scale: a.scale,
    negativeScale: a.negative_scale,
    strength: a.strength ?? 0.8,
    imagesPerPrompt: a.images_per_prompt,
    nIter: a.n_iter,
    batchSize: a.batch_size,
    seed: a.seed,
    iterSameSeed: a.iter_same_seed,
    shufflePrompts: a.shuffle_prompts,
    networks: applied.length,
    initImageSizes: inits ? inits.images.map((i) => [i.width, i.height] as const) : null,
    highresFix: highres,
    warn: (m) => console.error(`warning: ${m}`),
    ...(backend.sdxlSize ? { sdxlSize: backend.sdxlSize } : {}),
  });
  const total = batches.reduce((n, b) => n + b.length, 0);

  await initGpu();
  const loaded = await backend.load(a, specs);
  try {
    await makeDir(a.outdir);
    let done = 0, files = 0;
    const tGen = performance.now();
    for (const batch of batches) {
      const first = done + 1, last = done + batch.length;
      const what = batch.length > 1
        ? `images ${first}-${last}/${total}`
        : `image ${first}/${total}`;
      const images = await generateBatch(loaded.models, batch, {
        sampler: a.sampler,
        vPrediction: loaded.vPrediction,
        maxEmbeddingsMultiples: a.max_embeddings_multiples ?? 1,
        clipSkip: loaded.clipSkip,
        embNormalizeMode: a.emb_normalize_mode,
        vaeBatchSize: a.vae_batch_size,
        highres: highres
          ? {
            scale: a.highres_fix_scale!,
            steps: a.highres_fix_steps,
            strength: a.highres_fix_strength,
            save1st: a.highres_fix_save_1st,
          }
          : null,
        networks: loaded.networks,
        networkDefaultMuls: applied.map((s) => s.multiplier),
        initImages: inits?.images ?? null,
        onStep: (stage, step, steps) => progressBar(`${what} ${stage}`, step, steps),
      });
      const timestamp = timestampString();
      for (const [i, img] of images.entries()) {
        const muls = img.job.settings.networkMuls ?? applied.map((s) => s.multiplier);
        let k = 0;
        const loras: InfotextLora[] = specs.map((s) => ({
          name: s.name,
          multiplier: s.merged ? s.multiplier : muls[k++],
          hash: s.hash,
        }));
        let name = outputFileName({
          promptFileName: img.job.fileName,
          originalFileName: a.use_original_file_name && inits && img.job.initImage !== null
            ? inits.paths[img.job.initImage]
            : null,
          sequential: a.sequential_file_name,
          timestamp,
          highresPrefix: img.highresPrefix,
          indexInBatch: i % batch.length,
          sequenceNumber: img.job.number,
          seed: img.job.seed,
        });
        if (img.job.fileName !== null) {
          name = await firstAvailableFileName(name, (n) => exists(joinPath(a.outdir, n)));
        }
        const png = await encodePng(img.image, { text: pngText(a, img, loras, loaded) });
        const path = joinPath(a.outdir, name);
        await writeFileAtomic(path, png);
        files++;
        console.log(`saved ${path} (seed ${img.job.seed})`);
      }
      done = last;
    }
    const genSeconds = (performance.now() - tGen) / 1000;
    console.log(
      `done: ${total} image${total === 1 ? "" : "s"} (${files} file${files === 1 ? "" : "s"}) ` +
        `in ${a.outdir} in ${genSeconds.toFixed(1)} s of generation ` +
        `(${(genSeconds / Math.max(total, 1)).toFixed(2)} s/image, ` +
        `${((performance.now() - t0) / 1000).toFixed(1)} s in all)`,
    );
    return 0;
  } finally {
    loaded.dispose();
  }
}
