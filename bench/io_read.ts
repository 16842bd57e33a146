/**
 * Read every tensor of a safetensors file and convert it to f32, reporting throughput and peak
 * resident memory next to `cat FILE > /dev/null` measured in the same run (the peer: how fast the
 * bytes can come off the page cache or disk at all).
 *
 *   deno run -A bench/io_read.ts FILE [--drop-caches]
 *
 * `--drop-caches` (root, Linux) empties the page cache before each measurement, so all of them
 * read from disk; without it the first `cat` warms the cache and every pass reads from memory.
 *
 * @module
 */
import { openSafetensors } from "../core/io/safetensors.ts";

const MB = 1e6;

async function dropCaches(): Promise<boolean> {
  try {
    await new Deno.Command("sync").output();
    await Deno.writeTextFile("/proc/sys/vm/drop_caches", "3\n");
    return true;
  } catch {
    return false;
  }
}

async function timeCat(path: string): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command("sh", { args: ["-c", 'cat "$1" > /dev/null', "sh", path] })
    .output();
  if (!out.success) throw new Error(`cat ${path} failed`);
  return (performance.now() - t0) / 1000;
}

interface Pass {
  seconds: number;
  peakRss: number;
  startRss: number;
  elements: number;
}

/**
 * One pass over every tensor: "raw" reads bytes only, "f32" converts each into a fresh array,
 * "into" converts into one reused array (what a loader filling a GPU staging buffer does).
 */
async function readAll(path: string, mode: "raw" | "f32" | "into"): Promise<Pass> {
  const startRss = Deno.memoryUsage().rss;
  let peakRss = startRss;
  let elements = 0;
  const t0 = performance.now();
  const st = await openSafetensors(path);
  const numel = (name: string) => st.info(name).shape.reduce((a, b) => a * b, 1);
  const reused = new Float32Array(
    mode === "into" ? Math.max(...st.list().map((t) => numel(t.name))) : 0,
  );
  try {
    for (const t of st.list()) {
      if (mode === "f32") {
        elements += (await st.readF32(t.name)).data.length;
      } else if (mode === "into") {
        const n = numel(t.name);
        await st.readF32Into(t.name, reused.subarray(0, n));
        elements += n;
      } else {
        elements += (await st.readRaw(t.name)).length;
      }
      peakRss = Math.max(peakRss, Deno.memoryUsage().rss);
    }
  } finally {
    st.close();
  }
  return { seconds: (performance.now() - t0) / 1000, peakRss, startRss, elements };
}

async function main(args: string[]): Promise<void> {
  const path = args.find((a) => !a.startsWith("--"));
  if (path === undefined) {
    console.error("usage: deno run -A bench/io_read.ts FILE [--drop-caches]");
    Deno.exit(2);
  }
  const size = (await Deno.stat(path)).size;
  const cold = args.includes("--drop-caches");
  if (cold && !(await dropCaches())) {
    console.error("--drop-caches needs root on Linux (/proc/sys/vm/drop_caches)");
    Deno.exit(2);
  }
  const st = await openSafetensors(path);
  const tensors = st.list();
  const largest = Math.max(...tensors.map((t) => st.entry(t.name).byteLength));
  const dtypes = [...new Set(tensors.map((t) => t.dtype))].join(",");
  st.close();
  console.log(
    `${path}: ${(size / MB).toFixed(0)} MB, ${tensors.length} tensors (${dtypes}), ` +
      `largest ${(largest / MB).toFixed(1)} MB; ${cold ? "cold page cache" : "warm page cache"}`,
  );

  const catS = await timeCat(path);
  if (cold) await dropCaches();
  const raw = await readAll(path, "raw");
  if (cold) await dropCaches();
  const f32 = await readAll(path, "f32");
  if (cold) await dropCaches();
  const into = await readAll(path, "into");
  if (cold) await dropCaches();
  const cat2 = await timeCat(path);

  const rate = (s: number) => `${(size / MB / s).toFixed(0).padStart(6)} MB/s`;
  const rss = (p: Pass) =>
    `peak RSS ${(p.peakRss / MB).toFixed(0)} MB (start ${(p.startRss / MB).toFixed(0)} MB)`;
  console.log(`cat > /dev/null       ${rate(catS)}  (${catS.toFixed(2)} s)`);
  console.log(
    `readRaw, all tensors  ${rate(raw.seconds)}  (${raw.seconds.toFixed(2)} s), ${rss(raw)}`,
  );
  console.log(
    `readF32, all tensors  ${rate(f32.seconds)}  (${f32.seconds.toFixed(2)} s), ${rss(f32)}, ` +
      `${(f32.elements / f32.seconds / 1e6).toFixed(0)} M elements/s`,
  );
  console.log(
    `readF32Into, reused  ${rate(into.seconds)}  (${into.seconds.toFixed(2)} s), ${rss(into)}`,
  );
  console.log(`cat > /dev/null again ${rate(cat2)}  (${cat2.toFixed(2)} s)`);
  const best = Math.min(catS, cat2);
  console.log(`readF32 / cat time ratio: ${(f32.seconds / best).toFixed(2)}`);
}

if (import.meta.main) await main(Deno.args);
