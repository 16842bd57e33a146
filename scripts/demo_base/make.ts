/**
 * Reproduce the demo base model (`deno task demo_base`): export the world and its caption
 * embeddings, train the VAE and U-Net with PyTorch on the CPU, pack the LDM checkpoint into
 * core/demo/base/, and measure it through lorakit. See scripts/demo_base/README.md.
 *
 * Usage: deno run -A scripts/demo_base/make.ts [--work DIR] [--vae-minutes M] [--unet-minutes M]
 *   [--decoder-minutes M] [--threads N] [--python PATH]
 * The U-Net and the decoder's extra training run at the same time, one process each.
 */
import { parseArgs } from "node:util";

const { values: o } = parseArgs({
  args: Deno.args,
  options: {
    work: { type: "string", default: "out/demo_base" },
    "vae-minutes": { type: "string", default: "14" },
    "unet-minutes": { type: "string", default: "24" },
    "decoder-minutes": { type: "string", default: "22" },
    threads: { type: "string", default: "1" },
    python: { type: "string", default: "/usr/bin/python3" },
  },
});
const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();

async function run(cmd: string, args: string[]): Promise<void> {
  console.log(`$ ${cmd} ${args.join(" ")}`);
  const { code } = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (code !== 0) throw new Error(`${cmd} exited with code ${code}`);
}

const t0 = performance.now();
await run(deno, ["run", "-A", `${here}export_world.ts`, o.work!, "8000"]);
const train = (stage: string, minutes = "0") =>
  run(o.python!, [
    `${here}train.py`,
    o.work!,
    "--stage",
    stage,
    "--minutes",
    minutes,
    "--threads",
    o.threads!,
  ]);
await train("vae", o["vae-minutes"]);
await Promise.all([train("unet", o["unet-minutes"]), train("decoder", o["decoder-minutes"])]);
await train("join");
const target = new URL("../../core/demo/base/lkdemo_base.safetensors", import.meta.url).pathname;
await run(deno, ["run", "-A", `${here}pack.ts`, `${o.work}/weights.safetensors`, target, "fp16"]);
await run(deno, ["run", "-A", `${here}evaluate.ts`, target, o.work!]);
console.log(`total ${((performance.now() - t0) / 60000).toFixed(1)} min`);
