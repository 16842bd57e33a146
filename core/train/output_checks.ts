/**
 * What train_network will write, checked before the model is loaded or a step trained: the
 * output folder (LoRA files, states, samples), the log folder, a folder inside the output name,
 * the sample folder, and with `--cache_latents_to_disk` the image folders the
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
import type { TrainPlan } from "../kohya/plan_types.ts";
import type { PreparedData } from "./train_setup.ts";

/** The folder the `--logging_dir` log goes in (`--log_prefix` may name a folder below it). */
export function logFolder(loggingDir: string, logPrefix: string | null): string {
  return dirName(joinPath(loggingDir, `${logPrefix ?? ""}log.jsonl`));
}

/** Check every output path of the plan (the latent cache comes later, with the images). */
export async function checkTrainOutputs(
  plan: Pick<TrainPlan, "saving" | "logging" | "sampling">,
): Promise<void> {
  const { saving, logging, sampling } = plan;
  const dir = saving.outputDir;
  await checkWritableDir(dir, "--output_dir");
  if (logging.dir !== null) {
    await checkWritableDir(logFolder(logging.dir, logging.prefix), "--logging_dir");
  }
  const name = saving.outputName ?? "last";
  const flag = saving.outputName !== null ? "--output_name" : "--output_dir";
  const finalFile = joinPath(dir, `${name}.${saving.format}`);
  if (name.includes("/")) {
    // Only --output_dir is created; a folder named inside --output_name must already exist.
    await checkWritableFile(finalFile, flag);
  } else if (await isDirectory(finalFile)) {
    throw new LorakitError(
      `${flag}: cannot write there: ${finalFile}: a folder of that name is in the way`,
    );
  }
  const samples = sampling.prompts !== null &&
    (sampling.everyNSteps !== null || sampling.everyNEpochs !== null || sampling.atFirst);
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
