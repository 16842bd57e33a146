/**
 * `deno task bench`: runs every benchmark on whatever adapter is present, each with its peer
 * (PyTorch on this machine) measured in the same run, prints the table and writes
 * bench/RESULTS.md with the machine it came from. `deno task bench matmul conv2d` runs a subset.
 */
import { getGpu } from "../gpu/mod.ts";
import { type BenchRow, table } from "./harness.ts";

// host_path is a report of counts, not timed rows: it is appended as its own section.
const SUITES = [
  "host_path",
  "matmul",
  "conv2d",
  "attention",
  "groupnorm",
  "svd",
  "optim",
  "lora_tools",
  "unet",
  "resize_images",
  "gen",
  "train_step",
];

const only = Deno.args.filter((a) => !a.startsWith("-"));
/** `--out=FILE` writes the table there (also for a subset); default bench/RESULTS.md for a full run. */
const outArg = Deno.args.find((a) => a.startsWith("--out="))?.slice(6);
const gpu = await getGpu();
const rows: BenchRow[] = [];
const sections: string[] = [];
const ran: string[] = [];
for (const name of SUITES) {
  if (only.length && !only.includes(name)) continue;
  const url = new URL(`./${name}.ts`, import.meta.url);
  try {
    await Deno.stat(url);
  } catch {
    continue;
  }
  console.error(`== ${name}`);
  const mod = await import(url.href) as {
    bench?: () => Promise<BenchRow[]>;
    report?: () => Promise<string>;
  };
  if (mod.report) {
    const section = await mod.report();
    sections.push(section);
    console.log(section);
    ran.push(name);
    continue;
  }
  if (!mod.bench) continue;
  const r = await mod.bench();
  rows.push(...r);
  ran.push(name);
  console.log(table(r));
}

const cpu = (await Deno.readTextFile("/proc/cpuinfo").catch(() => ""))
  .match(/model name\s*:\s*(.*)/)?.[1] ?? "unknown CPU";
const header =
  `# Benchmark results\n\nAdapter: ${gpu.description}${
    gpu.isSoftware ? " (software)" : ""
  }; CPU: ${cpu}, ${navigator.hardwareConcurrency} threads; ${
    new Date().toISOString().slice(0, 10)
  }.\n` +
  `"speed vs peer" is the peer's time divided by ours (above 1: we are faster).\n`;
const text = `${header}\n${table(rows)}\n${sections.map((s) => `\n${s}`).join("")}`;
const outPath = outArg ?? (only.length ? null : new URL("./RESULTS.md", import.meta.url).pathname);
if (outPath) {
  await Deno.writeTextFile(outPath, text);
  console.error(`wrote ${outPath} (${ran.join(", ")})`);
}
