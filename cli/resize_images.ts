/**
 * `lorakit resize_images_to_resolution SRC DST --max_resolution 512x512,384x384 ...`: kohya
 * sd-scripts' `tools/resize_images_to_resolution.py` (v0.8.7 behaviour, which the golden
 * fixtures pin), with OpenCV-exact filters. The filter runs on the GPU when there is a WebGPU
 * adapter (`--device auto`, the default) and on the CPU otherwise or with `--device cpu`; both
 * use the same OpenCV tables.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { readImage } from "../core/image/decode.ts";
import { encodeJpeg, encodePng } from "../core/image/encode.ts";
import { type RasterImage, toRGB } from "../core/image/image.ts";
import {
  fitToResolution,
  type MaxResolution,
  parseMaxResolutions,
  scaledSize,
} from "../core/image/max_resolution.ts";
import { type Interpolation, planResize } from "../core/image/resample_tables.ts";
import {
  checkWritableDir,
  isDirectory,
  joinPath,
  listDir,
  makeDir,
  readBytes,
  writeFileAtomic,
} from "../core/io/fs.ts";
import { NoGpuError } from "../gpu/device.ts";
import { resampleGpu } from "../gpu/ops/resample.ts";
import { initGpu } from "../gpu/runtime.ts";
import { makeParser, type Parser, runTool } from "./lora_cli.ts";

/** Extensions kohya treats as images (matched case-sensitively, as its `str.endswith` does). */
const IMAGE_EXTS = [".png", ".jpg", ".jpeg", ".webp", ".bmp"];

const DESCRIPTION =
  "Resize the images in a folder to at most the area of each given resolution, keeping the " +
  "aspect ratio and never enlarging; each resolution is applied to the result of the previous " +
  "one. Images are read as RGB (alpha dropped, as Pillow's convert('RGB') does). Unlike kohya, " +
  "a JPEG's EXIF orientation is applied first, because the written files carry no EXIF and " +
  "would otherwise show sideways. Unreadable images are reported and skipped; the exit code is " +
  "then 1.";

interface Args {
  src_img_folder: string;
  dst_img_folder: string;
  max_resolution: string;
  divisible_by: number;
  interpolation: Interpolation;
  save_as_png: boolean;
  copy_associated_files: boolean;
  device: "auto" | "gpu" | "cpu";
}

function buildParser(): Parser {
  const p = makeParser("resize_images_to_resolution", DESCRIPTION);
  p.add_argument("src_img_folder", { type: "str", help: "folder with the source images" });
  p.add_argument("dst_img_folder", { type: "str", help: "folder for the results (created)" });
  p.add_argument("--max_resolution", {
    type: "str",
    default: "512x512,384x384,256x256,128x128",
    help: 'comma-separated maximum resolutions, e.g. "512x512,384x384" (default: %(default)s)',
  });
  p.add_argument("--divisible_by", {
    type: "int",
    default: 1,
    help: "floor each side to a multiple of this by a centred crop (default: 1)",
  });
  p.add_argument("--interpolation", {
    type: "str",
    choices: ["area", "cubic", "lanczos4"],
    default: "area",
    help: "OpenCV filter used when shrinking (default: area)",
  });
  p.add_argument("--save_as_png", {
    action: "store_true",
    help: "write PNG instead of JPEG (q100)",
  });
  p.add_argument("--copy_associated_files", {
    action: "store_true",
    help: "also copy files sharing an image's stem (captions...) once per resolution",
  });
  p.add_argument("--device", {
    type: "str",
    choices: ["auto", "gpu", "cpu"],
    default: "auto",
    help: "where the filter runs: the GPU (WebGPU), the CPU, or the GPU when one is found " +
      "(default: auto; not a kohya flag, results are the same either way)",
  });
  return p;
}

function stemOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(0, dot) : name;
}

function extOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot) : "";
}

async function copyAtomic(from: string, to: string): Promise<void> {
  await writeFileAtomic(to, await readBytes(from));
}

/** Progress on stderr: one rewritten line on a terminal, else one line per file. */
function progress(i: number, n: number, name: string): void {
  const text = `[${i}/${n}] ${name}`;
  const enc = new TextEncoder();
  if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(enc.encode(`\r\x1b[K${text}`));
  else Deno.stderr.writeSync(enc.encode(`${text}\n`));
}

/** Whether to filter on the GPU: `auto` falls back to the CPU when WebGPU has no adapter. */
async function useGpu(device: Args["device"]): Promise<boolean> {
  if (device === "cpu") return false;
  try {
    await initGpu();
    return true;
  } catch (e) {
    if (!(e instanceof NoGpuError)) throw e;
    if (device === "gpu") throw new LorakitError(`--device gpu: ${e.message}`);
    console.error("note: no WebGPU adapter, resizing on the CPU");
    return false;
  }
}

/**
 * One step of the cascade. On the GPU only the filter moves there: the image is resized to the
 * scaled size first, so `fitToResolution` then finds nothing to resize and just crops.
 */
async function fit(
  img: RasterImage,
  res: MaxResolution,
  a: Args,
  name: string,
  gpu: boolean,
): Promise<RasterImage> {
  if (gpu) {
    const [sw, sh] = scaledSize(img.width, img.height, res);
    if (sw !== img.width || sh !== img.height) {
      img = await resampleGpu(img, planResize(img.width, img.height, sw, sh, a.interpolation));
    }
  }
  return fitToResolution(img, res, a.divisible_by, a.interpolation, name).image;
}

/** Run the tool with command-line `args` (without the tool name); resolves to the exit code. */
export function main(args: string[]): Promise<number> {
  // 1 already means "some images were skipped", so a failure of the whole run is 2.
  return runTool<Args>(buildParser(), args, run, 2);
}

async function run(a: Args): Promise<number> {
  const resolutions = parseMaxResolutions(a.max_resolution);
  if (!Number.isInteger(a.divisible_by) || a.divisible_by < 1) {
    throw new LorakitError(`--divisible_by: expected a positive integer, found ${a.divisible_by}`);
  }
  if (!(await isDirectory(a.src_img_folder))) {
    throw new LorakitError(`${a.src_img_folder}: source folder not found`);
  }
  // An existing but read-only destination would otherwise fail only at the first image.
  await checkWritableDir(a.dst_img_folder, "dst_img_folder");
  await makeDir(a.dst_img_folder);
  const gpu = await useGpu(a.device);
  const entries = (await listDir(a.src_img_folder)).filter((e) => !e.isDirectory);
  const names = entries.map((e) => e.name);
  const t0 = performance.now();
  let images = 0, written = 0, copied = 0;
  const failed: string[] = [];
  for (const [i, name] of names.entries()) {
    progress(i + 1, names.length, name);
    const src = joinPath(a.src_img_folder, name);
    if (!IMAGE_EXTS.some((x) => name.endsWith(x))) {
      await copyAtomic(src, joinPath(a.dst_img_folder, name));
      copied++;
      continue;
    }
    const base = stemOf(name);
    try {
      let img: RasterImage = toRGB(await readImage(src));
      for (const res of resolutions) {
        img = await fit(img, res, a, src, gpu);
        const out = `${base}+${res.text}${a.save_as_png ? ".png" : ".jpg"}`;
        const bytes = a.save_as_png ? await encodePng(img) : await encodeJpeg(img, 100);
        await writeFileAtomic(joinPath(a.dst_img_folder, out), bytes);
        written++;
      }
      images++;
    } catch (e) {
      if (!(e instanceof LorakitError)) throw e;
      failed.push(e.message);
      console.error(`\nskipped: ${e.message}`);
      continue;
    }
    if (a.copy_associated_files) {
      // kohya globs "<stem>.*": every file named <stem>.<something> whose last extension is not
      // an image extension, copied once per resolution.
      for (const other of names) {
        if (!other.startsWith(`${base}.`) || IMAGE_EXTS.includes(extOf(other))) continue;
        for (const res of resolutions) {
          const to = joinPath(a.dst_img_folder, `${base}+${res.text}${extOf(other)}`);
          await copyAtomic(joinPath(a.src_img_folder, other), to);
          copied++;
        }
      }
    }
  }
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (Deno.stderr.isTerminal()) console.error("");
  console.log(
    `${images} images -> ${written} files, ${copied} other files copied, ${failed.length} skipped (${secs} s)`,
  );
  return failed.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
