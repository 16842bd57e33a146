/**
 * Test data for the train_network tests: small PNG images of two aspect ratios with captions, a
 * regularization folder, and a kohya dataset TOML, written to a temporary folder.
 */
import { encodePng } from "../core/image/encode.ts";
import { makeImage } from "../core/image/image.ts";

/** A smooth, seeded RGB pattern (so the VAE sees structure, not noise). */
function pattern(w: number, h: number, seed: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 3;
      out[i] = 128 + 100 * Math.sin((x + seed * 7) / 9);
      out[i + 1] = 128 + 100 * Math.cos((y + seed * 3) / 7);
      out[i + 2] = (x * 3 + y * 5 + seed * 40) % 256;
    }
  }
  return out;
}

/** Write a PNG of `w` x `h`. */
export async function writePng(path: string, w: number, h: number, seed: number): Promise<void> {
  await Deno.writeFile(path, await encodePng(makeImage(w, h, 3, pattern(w, h, seed))));
}

/** The dataset folders and TOML the e2e tests train on. */
export interface TrainData {
  root: string;
  toml: string;
  trainDir: string;
  regDir: string;
}

/**
 * Two training images (64x64 and 128x64) with captions, one regularization image (64x64), and a
 * dataset TOML with buckets at resolution 128x64 (buckets 64x64, 128x64, 64x128).
 */
export async function makeTrainData(extraToml = ""): Promise<TrainData> {
  const root = await Deno.makeTempDir({ prefix: "lorakit_train_" });
  const trainDir = `${root}/img`, regDir = `${root}/reg`;
  await Deno.mkdir(trainDir);
  await Deno.mkdir(regDir);
  await writePng(`${trainDir}/a.png`, 64, 64, 1);
  await Deno.writeTextFile(`${trainDir}/a.txt`, "sks toy, red, round");
  await writePng(`${trainDir}/b.png`, 128, 64, 2);
  await Deno.writeTextFile(`${trainDir}/b.txt`, "sks toy, wide, blue");
  await writePng(`${regDir}/r.png`, 64, 64, 3);
  const toml = `${root}/dataset.toml`;
  await Deno.writeTextFile(
    toml,
    `[general]
enable_bucket = true
min_bucket_reso = 64
max_bucket_reso = 128
caption_extension = ".txt"
${extraToml}
[[datasets]]
resolution = [128, 64]
batch_size = 2

  [[datasets.subsets]]
  image_dir = "${trainDir}"
  num_repeats = 1

  [[datasets.subsets]]
  image_dir = "${regDir}"
  class_tokens = "toy"
  is_reg = true
`,
  );
  return { root, toml, trainDir, regDir };
}

/**
 * The train_network flags most tests share: a LoRA of dim 4 on `model`, trained on `toml`'s data
 * into `out`, latents cached, images decoded in-process; `extra` flags follow.
 */
export function tinyLoraArgv(
  model: string,
  toml: string,
  out: string,
  ...extra: string[]
): string[] {
  return [
    "--pretrained_model_name_or_path",
    model,
    "--dataset_config",
    toml,
    "--output_dir",
    out,
    "--network_module",
    "networks.lora",
    "--network_dim",
    "4",
    "--cache_latents",
    "--max_data_loader_n_workers",
    "0",
    ...extra,
  ];
}
