/**
 * Reproduce the demo base model (`deno task demo_base`): export the world and its caption
 * embeddings (the token-and-position text encoder, see `tokenPositionTensors`), train the U-Net
 * with PyTorch on the CPU, pack the LDM checkpoint into core/demo/base/, and measure it through
 * lorakit. See scripts/demo_base/README.md.
 *
 * Usage: deno run -A scripts/demo_base/make.ts [--from CKPT|scratch] [--work DIR]
 *   [--unet-minutes M] [--unet-lr LR] [--vae-minutes M] [--decoder-minutes M] [--threads N]
 *   [--python PATH]
 *
 * `--from CKPT` (default: the committed core/demo/base/lkdemo_base.safetensors) reuses that
 * checkpoint's VAE as it is and continues training its U-Net on the new embeddings (high
 * timesteps sampled more, peak learning rate `--unet-lr`, cosine decay over `--unet-minutes`).
 * `--from scratch` trains the VAE, then the U-Net and the decoder's extra training at the same
 * time (one process each), as the first base model was made.
 */
import { parseArgs } from "node:util";
import { demoBasePath } from "../../core/demo/base_model.ts";

const { values: o } = parseArgs({
  args: Deno.args,
  options: {
    from: { type: "string", default: demoBasePath() },
    work: { type: "string", default: "out/demo_base" },
    "unet-minutes": { type: "string", default: "50" },
    "unet-lr": { type: "string", default: "1e-3" },
    "vae-minutes": { type: "string", default: "14" },
    "decoder-minutes": { type: "string", default: "22" },
    threads: { type: "string", default: "1" },
    python: { type: "string", default: "/usr/bin/python3" },
  },
});
const here = new URL(".", import.meta.url).pathname;
const deno = Deno.execPath();
const work = o.work!;

async function run(cmd: string, args: string[]): Promise<void> {
  console.log(`$ ${cmd} ${args.join(" ")}`);
  const { code } = await new Deno.Command(cmd, { args, stdout: "inherit", stderr: "inherit" })
    .output();
  if (code !== 0) throw new Error(`${cmd} exited with code ${code}`);
}
const train = (stage: string, minutes: string, ...extra: string[]) =>
  run(o.python!, [
    `${here}train.py`,
    work,
    "--stage",
    stage,
    "--minutes",
    minutes,
    "--threads",
    o.threads!,
    ...extra,
  ]);

const t0 = performance.now();
await run(deno, ["run", "-A", `${here}export_world.ts`, work, "8000"]);
if (o.from === "scratch") {
  await train("vae", o["vae-minutes"]!);
  await Promise.all([
    train("unet", o["unet-minutes"]!, "--lr", o["unet-lr"]!),
    train("decoder", o["decoder-minutes"]!),
  ]);
} else {
  // The checkpoint is read before anything is written over it (it may be the target).
  await run(deno, ["run", "-A", `${here}extract.ts`, `${work}/vae.safetensors`, "vae", o.from!]);
  await run(deno, [
    "run",
    "-A",
    `${here}extract.ts`,
    `${work}/unet_from.safetensors`,
    "unet",
    o.from!,
  ]);
  // join would otherwise weigh a decoder left by an earlier scratch run in the same folder.
  await Deno.remove(`${work}/decoder.safetensors`).catch(() => {});
  await train(
    "unet",
    o["unet-minutes"]!,
    "--resume",
    "unet_from.safetensors",
    "--lr",
    o["unet-lr"]!,
    "--high-t",
    "--snapshot-minutes",
    "6",
  );
}
await train("join", "0");
const target = demoBasePath();
await run(deno, ["run", "-A", `${here}pack.ts`, `${work}/weights.safetensors`, target, "fp16"]);
await run(deno, ["run", "-A", `${here}evaluate.ts`, target, work]);
console.log(`total ${((performance.now() - t0) / 60000).toFixed(1)} min`);
