/**
 * Benchmark of resize_images_to_resolution's per-image work: decode a 2048x1536 JPEG, cascade it
 * to 512x512, 384x384 and 256x256 (INTER_AREA), encode each as JPEG quality 100. The peer is
 * OpenCV (python3 + cv2: imread, resize, imwrite) doing the same in the same run; the decode
 * alone and the filter alone (resize of the decoded image, no codecs) are timed for both too.
 * Our filter runs twice: on the CPU and on the GPU (WebGPU; skipped when there is no adapter).
 *
 * Run: `deno run -A bench/resize_images.ts [iterations]`
 */
import { decodeImage } from "../core/image/decode.ts";
import { encodeJpeg } from "../core/image/encode.ts";
import { makeImage, type RasterImage, toRGB } from "../core/image/image.ts";
import {
  fitToResolution,
  type MaxResolution,
  parseMaxResolutions,
  scaledSize,
} from "../core/image/max_resolution.ts";
import { planResize } from "../core/image/resample_tables.ts";
import { resampleGpu } from "../gpu/ops/resample.ts";
import { initGpu } from "../gpu/runtime.ts";
import { type BenchRow, table } from "./harness.ts";

let ITER = 10;
const RES = parseMaxResolutions("512x512,384x384,256x256");

function testImage(w: number, h: number): RasterImage {
  // Gradients, stripes and noise: a JPEG of realistic size, not a trivially compressible one.
  const img = makeImage(w, h, 3);
  let s = 12345;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      s = (s * 1103515245 + 12345) >>> 0;
      const n = (s >>> 24) & 31;
      const o = (y * w + x) * 3;
      img.data[o] = ((x * 255) / w + n) & 255;
      img.data[o + 1] = ((y * 255) / h + ((x >> 3) & 1) * 40) & 255;
      img.data[o + 2] = (((x + y) >> 2) & 255) ^ n;
    }
  }
  return img;
}

/** One cascade step as the CLI does it: the filter on the GPU or the CPU, then the crop. */
async function fit(img: RasterImage, r: MaxResolution, gpu: boolean): Promise<RasterImage> {
  const [sw, sh] = scaledSize(img.width, img.height, r);
  if (gpu && (sw !== img.width || sh !== img.height)) {
    img = await resampleGpu(img, planResize(img.width, img.height, sw, sh, "area"));
  }
  return fitToResolution(img, r, 1, "area", "bench.jpg").image;
}

/** Rates in images per second: end to end, decode alone, filter alone. */
async function ours(
  jpg: Uint8Array,
  gpu: boolean,
): Promise<{ full: number; decode: number; filter: number }> {
  let filter = 0, decode = 0;
  const t0 = performance.now();
  for (let i = 0; i < ITER; i++) {
    const td = performance.now();
    let img = toRGB(await decodeImage(jpg, "bench.jpg"));
    decode += performance.now() - td;
    for (const r of RES) {
      const t = performance.now();
      img = await fit(img, r, gpu);
      filter += performance.now() - t;
      await encodeJpeg(img, 100);
    }
  }
  const full = performance.now() - t0;
  const rate = (ms: number): number => (ITER * 1000) / ms;
  return { full: rate(full), decode: rate(decode), filter: rate(filter) };
}

async function hasGpu(): Promise<boolean> {
  try {
    await initGpu();
    return true;
  } catch {
    return false;
  }
}

const PEER = `
import sys, time, math, json, cv2, numpy as np
path, it = sys.argv[1], int(sys.argv[2])
res = [(512, 512), (384, 384), (256, 256)]
def fit(img, w, h):
    cur = img.shape[0] * img.shape[1]
    if cur > w * h:
        s = math.sqrt(w * h / cur)
        nh, nw = int(img.shape[0] * s), int(img.shape[1] * s)
        img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
    return img
filt = 0.0
dec = 0.0
t0 = time.perf_counter()
for _ in range(it):
    t = time.perf_counter()
    img = cv2.imread(path)
    dec += time.perf_counter() - t
    for (w, h) in res:
        t = time.perf_counter()
        img = fit(img, w, h)
        filt += time.perf_counter() - t
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 100])
full = time.perf_counter() - t0
print(json.dumps({"full": it / full, "decode": it / dec, "filter": it / filt, "threads": cv2.getNumThreads(), "version": cv2.__version__}))
`;

async function peer(path: string): Promise<Record<string, number | string> | null> {
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      const out = await new Deno.Command(py, { args: ["-c", PEER, path, String(ITER)] }).output();
      if (out.success) return JSON.parse(new TextDecoder().decode(out.stdout));
    } catch { /* try the next interpreter */ }
  }
  return null;
}

type Rates = { full: number; decode: number; filter: number };

/** Run the bench: rows in seconds per image (lower is better), OpenCV as the peer. */
export async function bench(iterations = 5): Promise<BenchRow[]> {
  ITER = iterations;
  const tmp = await Deno.makeTempDir({ prefix: "lorakit_bench_" });
  try {
    const jpg = await encodeJpeg(testImage(2048, 1536), 95);
    const path = `${tmp}/bench.jpg`;
    await Deno.writeFile(path, jpg);
    const gpu = await hasGpu();
    await ours(jpg, false); // warm-up: JIT and WebAssembly instantiation
    const a: Rates = await ours(jpg, false);
    if (gpu) await ours(jpg, true); // warm-up: pipeline compilation
    const g: Rates | null = gpu ? await ours(jpg, true) : null;
    const b = await peer(path);
    const peerName = b ? `opencv ${b.version} (${b.threads} threads)` : undefined;
    const pr = b
      ? { full: b.full as number, decode: b.decode as number, filter: b.filter as number }
      : null;
    const label = "2048x1536 JPEG -> 512,384,256 area, q100";
    const row = (name: string, ours: number, theirs: number | undefined): BenchRow => ({
      name: `resize_images ${label}: ${name}`,
      seconds: 1 / ours,
      peer: peerName,
      peerSeconds: theirs ? 1 / theirs : undefined,
      note: "seconds per image",
    });
    const rows = [
      row("end to end, CPU filter", a.full, pr?.full),
      row("decode alone", a.decode, pr?.decode),
      row("filter alone, CPU", a.filter, pr?.filter),
    ];
    if (g) {
      rows.push(row("end to end, GPU filter", g.full, pr?.full));
      rows.push(row("filter alone, GPU", g.filter, pr?.filter));
    }
    return rows;
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

if (import.meta.main) console.log(table(await bench(Number(Deno.args[0] ?? 10))));
