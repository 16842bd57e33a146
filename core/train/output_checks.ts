/**
 * What train_network will write, checked before the model is loaded or a step trained: the
 * `--output_dir` (LoRA files, states, samples), the `--logging_dir` log, a folder inside
 * `--output_name`, the sample folder, and with `--cache_latents_to_disk` the image folders the
 * latent files go to. Each check takes milliseconds and creates nothing, so an unwritable path
 * fails in one line naming its flag instead of after hours of training.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import {
  checkWritableDir,
  checkWritableFile,
  dirName,
  exists,
  isDirectory,
  joinPath,
} from "../io/fs.ts";
import { latentCachePath } from "./latent_cache.ts";
import type { TrainArgs } from "../kohya/train_args.ts";
import type { PreparedData } from "./train_setup.ts";

/** The folder the `--logging_dir` log goes in (`--log_prefix` may name a folder below it). */
export function logFolder(loggingDir: string, logPrefix: string | null): string {
  return dirName(joinPath(loggingDir, `${logPrefix ?? ""}log.jsonl`));
}

/** Check every output path that the flags name (the latent cache comes later, with the images). */
export async function checkTrainOutputs(args: TrainArgs): Promise<void> {
  const dir = args.output_dir ?? ".";
  await checkWritableDir(dir, "--output_dir");
  if (args.logging_dir !== null) {
    await checkWritableDir(logFolder(args.logging_dir, args.log_prefix), "--logging_dir");
  }
  const name = args.output_name ?? "last";
  const flag = args.output_name !== null ? "--output_name" : "--output_dir";
  const finalFile = joinPath(dir, `${name}.${args.save_model_as ?? "safetensors"}`);
  if (name.includes("/")) {
    // Only --output_dir is created; a folder named inside --output_name must already exist.
    await checkWritableFile(finalFile, flag);
  } else if (await isDirectory(finalFile)) {
    throw new LorakitError(
      `${flag}: cannot write there: ${finalFile}: a folder of that name is in the way`,
    );
  }
  const samples = args.sample_prompts !== null &&
    (args.sample_every_n_steps !== null || args.sample_every_n_epochs !== null ||
      args.sample_at_first);
  if (samples) {
    const sampleDir = joinPath(dir, "sample");
    await checkWritableDir(sampleDir, "--sample_prompts");
    if (name.includes("/")) {
      await checkWritableFile(joinPath(sampleDir, `${name}_sample.png`), "--output_name");
    }
  }
}

/**
 * With `--cache_latents_to_disk`, the latent file of an image is written beside it: check each
 * folder that holds an image without one. Folders whose images all have a cache file are not
 * probed, so a read-only dataset whose cache is complete still trains; a cache file that turns
 * out stale there fails when it is rewritten, before training starts.
 */
export async function checkLatentCacheFolders(data: PreparedData): Promise<void> {
  const flag = "--cache_latents_to_disk";
  const folders = new Set<string>();
  for (const d of data.datasets) {
    for (const im of d.scan.images) {
      const path = latentCachePath(im.path);
      if (await isDirectory(path)) {
        throw new LorakitError(
          `${flag}: cannot write there: ${path}: a folder of that name is in the way`,
        );
      }
      if (!(await exists(path))) folders.add(dirName(im.path));
    }
  }
  for (const f of folders) await checkWritableDir(f, flag);
}
