/**
 * `lorakit <tool> [args]`: dispatches to one file per tool in cli/.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";

type ToolMain = (args: string[]) => Promise<number>;

/** Tools by name; each module exports `main(args): Promise<number>` (the exit code). */
const TOOLS: Record<string, { about: string; load: () => Promise<ToolMain> }> = {
  train_network: {
    about: "train a LoRA with kohya's train_network.py flags and --config_file TOML",
    load: async () => (await import("./train_network.ts")).main,
  },
  demo: {
    about: "run everything end to end offline (random tiny model, synthetic data) -> report.html",
    load: async () => (await import("./demo.ts")).main,
  },
  engine: {
    about: "show the WebGPU adapter and run a quick engine self-check and benchmark",
    load: async () => (await import("./engine.ts")).main,
  },
  merge_lora: {
    about: "merge LoRA files into an SD checkpoint, or into one LoRA (kohya's tool)",
    load: async () => (await import("./merge_lora.ts")).main,
  },
  svd_merge_lora: {
    about: "merge LoRA files through their deltas and an SVD at a new rank (kohya's tool)",
    load: async () => (await import("./svd_merge_lora.ts")).main,
  },
  extract_lora_from_models: {
    about: "extract a LoRA from the difference of two checkpoints by SVD (kohya's tool)",
    load: async () => (await import("./extract_lora_from_models.ts")).main,
  },
  extract_lora_from_dylora: {
    about: "split a DyLoRA file into plain LoRA files of lower ranks (kohya's tool)",
    load: async () => (await import("./extract_lora_from_dylora.ts")).main,
  },
  resize_lora: {
    about: "change a LoRA's rank by SVD, fixed or per module by a rule (kohya's tool)",
    load: async () => (await import("./resize_lora.ts")).main,
  },
  check_lora_weights: {
    about: "print mean/min |w| of each LoRA factor (kohya's tool)",
    load: async () => (await import("./check_lora_weights.ts")).main,
  },
  gen_img: {
    about: "generate images from prompts, with LoRAs, img2img and highres fix (kohya's gen_img)",
    load: async () => (await import("./gen_img.ts")).main,
  },
  resize_images_to_resolution: {
    about: "resize training images to one or more maximum resolutions (kohya's tool)",
    load: async () => (await import("./resize_images.ts")).main,
  },
};

/** Register a tool (used by tool modules as they are added). */
export function toolNames(): string[] {
  return Object.keys(TOOLS);
}

function usage(): string {
  const rows = Object.entries(TOOLS).map(([k, v]) => `  ${k.padEnd(34)} ${v.about}`);
  return `usage: lorakit <tool> [options]\n\ntools:\n${rows.join("\n")}\n\n` +
    `Run 'lorakit <tool> --help' for a tool's options.`;
}

/**
 * WebGPU's adapter probe also tries the GL backend, whose EGL loader prints "XDG_RUNTIME_DIR is
 * invalid or not set" twice when the variable is missing (servers, containers, CI). It only
 * needs to name a directory; point it at the temporary one before any GPU use.
 */
function quietGlProbe(): void {
  if (Deno.build.os !== "linux") return;
  try {
    if (!Deno.env.get("XDG_RUNTIME_DIR")) {
      Deno.env.set("XDG_RUNTIME_DIR", Deno.env.get("TMPDIR") ?? "/tmp");
    }
  } catch {
    // Without --allow-env the message stays; nothing else depends on it.
  }
}

/** Entry point; returns the process exit code. */
export async function run(argv: string[]): Promise<number> {
  quietGlProbe();
  const [tool, ...rest] = argv;
  if (!tool || tool === "-h" || tool === "--help") {
    console.log(usage());
    return tool ? 0 : 2;
  }
  const entry = TOOLS[tool];
  if (!entry) {
    console.error(`lorakit: unknown tool '${tool}'.\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await entry.load())(rest);
  } catch (e) {
    if (e instanceof LorakitError || (e instanceof Error && e.name === "NoGpuError")) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await run(Deno.args));
}
