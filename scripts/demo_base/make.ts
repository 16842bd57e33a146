/**
 * Reproduce the demo base model (`deno task demo_base`): export the world and its caption
 * embeddings (the token-and-position text encoder, see `tokenPositionTensors`), train the VAE
 * and the U-Net with PyTorch on the CPU, pack the LDM checkpoint into core/demo/base/, and
 * measure it through lorakit. See scripts/demo_base/README.md.
 *
 * Usage: deno run -A scripts/demo_base/make.ts [--from CKPT|scratch] [--work DIR]
 *   [--colours-minutes M] [--unet-minutes M] [--unet-lr LR] [--vae-minutes M] [--threads N]
 *   [--python PATH]
 *
 * `--from CKPT` (default: the committed core/demo/base/lkdemo_base.safetensors) starts from that
 * checkpoint: its VAE continues on random colours as well as the palette for
 * `--colours-minutes` (0: kept as it is), and its U-Net continues on the new embeddings for
 * `--unet-minutes` (high timesteps sampled more, peak learning rate `--unet-lr`, cosine decay;
 * 0: kept as it is). `--from scratch` trains the VAE, its colour stage, then the U-Net from
 * random weights.
 */
import { parseArgs } from "node:util";
import { demoBasePath } from "../../core/demo/base_model.ts";

const { values: o } = parseArgs({
  args: Deno.args,
  options: {
    from: { type: "string", default: demoBasePath() },
    work: { type: "string", default: "out/demo_base" },
    "colours-minutes": { type: "string", default: "28" },
    "unet-minutes": { type: "string", default: "50" },
    "unet-lr": { type: "string", default: "1e-3" },
    "vae-minutes": { type: "string", default: "14" },
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
  await train("colours", o["colours-minutes"]!);
  await train("unet", o["unet-minutes"]!, "--lr", o["unet-lr"]!);
} else {
  // The checkpoint is read before anything is written over it (it may be the target).
  for (const part of ["vae", "unet"]) {
    await run(deno, [
      "run",
      "-A",
      `${here}extract.ts`,
      `${work}/${part}.safetensors`,
      part,
      o.from!,
    ]);
  }
  if (Number(o["colours-minutes"]) > 0) await train("colours", o["colours-minutes"]!);
  if (Number(o["unet-minutes"]) > 0) {
    await Deno.rename(`${work}/unet.safetensors`, `${work}/unet_from.safetensors`);
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
}
await train("join", "0");
const target = demoBasePath();
await run(deno, ["run", "-A", `${here}pack.ts`, `${work}/weights.safetensors`, target, "fp16"]);
await run(deno, ["run", "-A", `${here}evaluate.ts`, target, work]);
console.log(`total ${((performance.now() - t0) / 60000).toFixed(1)} min`);
