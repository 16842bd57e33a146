/**
 * `lorakit gen_img ...`: kohya sd-scripts' gen_img.py for SD 1.x/2.x (see `gen_img_args.ts` for
 * the flags and `core/sample/gen_plan.ts`, `gen_loop.ts` for what runs). Everything that can be
 * checked is checked before the output folder is touched: that it can be written, files, flags,
 * prompt options, sizes, seeds, the model and the LoRA files against it.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { encodePng } from "../core/image/encode.ts";
import { checkWritableDir, exists, joinPath, makeDir, writeFileAtomic } from "../core/io/fs.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { createNetworkFromWeights, type LoraNetwork } from "../core/lora/network.ts";
import { loadStableDiffusion, type StableDiffusion } from "../core/models/mod.ts";
import {
  fileStem,
  firstAvailableFileName,
  outputFileName,
  timestampString,
} from "../core/sample/file_naming.ts";
import { generateBatch, type GeneratedImage, type GenModels } from "../core/sample/gen_loop.ts";
import { planGeneration } from "../core/sample/gen_plan.ts";
import { formatInfotext, type InfotextLora } from "../core/sample/infotext.ts";
import { loadVaeFile } from "../core/sample/vae_file.ts";
import { initGpu } from "../gpu/mod.ts";
import { buildGenImgParser, type GenImgArgs, rejectUnsupported } from "./gen_img_args.ts";
import {
  loadInitImages,
  mustExist,
  type NetworkSpec,
  networkSpecs,
  promptLines,
} from "./gen_img_inputs.ts";
import { runTool } from "./lora_cli.ts";

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

async function loadModels(a: GenImgArgs): Promise<{ sd: StableDiffusion; models: GenModels }> {
  const dtype = a.fp16 ? "f16" : "f32";
  const v2 = a.v2 ? true : a.v1 ? false : undefined;
  const opts = { v2, vPrediction: a.v_parameterization || undefined };
  const separateVae = a.vae !== null || (a.fp16 && a.no_half_vae);
  const sd = await loadStableDiffusion(a.ckpt!, {
    ...opts,
    dtype,
    parts: separateVae ? ["text_encoder", "unet"] : ["text_encoder", "unet", "vae"],
  });
  if (a.v1 && sd.config.v2) {
    sd.dispose();
    throw new LorakitError(`--v1: expected an SD 1.x model, found SD 2.x weights in ${a.ckpt}`);
  }
  try {
    const vaeDtype = a.no_half_vae ? "f32" : dtype;
    const vae: GenModels["vae"] & { dispose(): void } = a.vae !== null
      ? await loadVaeFile(a.vae, sd.config, vaeDtype)
      : separateVae
      ? (await loadStableDiffusion(a.ckpt!, { ...opts, dtype: vaeDtype, parts: ["vae"] })).vae
      : sd.vae;
    const whole: StableDiffusion = {
      config: sd.config,
      tokenizer: sd.tokenizer,
      textEncoder: sd.textEncoder,
      unet: sd.unet,
      vae: vae as StableDiffusion["vae"],
      dispose() {
        sd.dispose();
        if (separateVae) vae.dispose();
      },
    };
    return {
      sd: whole,
      models: { tokenizer: sd.tokenizer, textEncoder: sd.textEncoder, unet: sd.unet, vae },
    };
  } catch (e) {
    sd.dispose();
    throw e;
  }
}

/** Load, merge or apply each network (errors name the file; nothing stays applied on error). */
async function loadNetworks(
  specs: NetworkSpec[],
  sd: StableDiffusion,
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
  clipSkip: number,
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
    clipSkip,
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
  return text;
}

async function run(a: GenImgArgs): Promise<number> {
  rejectUnsupported(a);
  const t0 = performance.now();
  // Images are written only after the model is loaded and the first batch generated.
  await checkWritableDir(a.outdir, "--outdir");
  await mustExist(a.ckpt!, "--ckpt");
  if (a.vae !== null) await mustExist(a.vae, "--vae");
  const specs = networkSpecs(a);
  for (const s of specs) await mustExist(s.path, "--network_weights");
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
    width: a.W ?? 512,
    height: a.H ?? 512,
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
  });
  const total = batches.reduce((n, b) => n + b.length, 0);

  await initGpu();
  const { sd, models } = await loadModels(a);
  let networks: LoraNetwork[] = [];
  try {
    networks = await loadNetworks(specs, sd, a.network_show_meta);
    const clipSkip = a.clip_skip ?? (sd.config.v2 ? 2 : 1);
    await makeDir(a.outdir);
    let done = 0, files = 0;
    const tGen = performance.now();
    for (const batch of batches) {
      const first = done + 1, last = done + batch.length;
      const what = batch.length > 1
        ? `images ${first}-${last}/${total}`
        : `image ${first}/${total}`;
      const images = await generateBatch(models, batch, {
        sampler: a.sampler,
        vPrediction: sd.config.vPrediction,
        maxEmbeddingsMultiples: a.max_embeddings_multiples ?? 1,
        clipSkip,
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
        networks,
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
        const png = await encodePng(img.image, { text: pngText(a, img, loras, clipSkip) });
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
    for (const n of networks) n.dispose();
    sd.dispose();
  }
}

/** `lorakit gen_img [flags]`; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  return await runTool<GenImgArgs>(buildGenImgParser(), args, run);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
