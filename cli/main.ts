/**
 * `lorakit <tool> [args]`: dispatches to one file per tool in cli/.
 *
 * @module
 */
import {
  DEBUG_ENV,
  DEBUG_FLAG,
  EXIT_INTERNAL_ERROR,
  reportFailure,
  setDebug,
  takeDebugFlag,
} from "./report.ts";

type ToolMain = (args: string[]) => Promise<number>;

/** A tool of the command line: a line for the usage and its module's `main`, loaded on use. */
export interface ToolEntry {
  about: string;
  load: () => Promise<ToolMain>;
}

/** Tools by name; each module exports `main(args): Promise<number>` (the exit code). */
const TOOLS: Record<string, ToolEntry> = {
  train_network: {
    about: "train a LoRA with kohya's train_network.py flags and --config_file TOML",
    load: async () => (await import("./train_network.ts")).main,
  },
  sdxl_train_network: {
    about: "train a LoRA for SDXL with kohya's sdxl_train_network.py flags",
    load: async () => (await import("./train_network.ts")).sdxlMain,
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
  sdxl_merge_lora: {
    about: "merge SDXL LoRA files into an SDXL checkpoint, or into one LoRA (kohya's tool)",
    load: async () => (await import("./sdxl_merge_lora.ts")).main,
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
  sdxl_gen_img: {
    about: "generate images with an SDXL model: size conditioning, both text encoders (kohya's)",
    load: async () => (await import("./sdxl_gen_img.ts")).main,
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

function usage(tools: Record<string, ToolEntry>): string {
  const rows = Object.entries(tools).map(([k, v]) => `  ${k.padEnd(34)} ${v.about}`);
  return [
    `usage: lorakit [${DEBUG_FLAG}] <tool> [options]`,
    "",
    "tools:",
    ...rows,
    "",
    "Run 'lorakit <tool> --help' for a tool's options.",
    "",
    `  ${DEBUG_FLAG.padEnd(34)} print the stack trace of an error (anywhere on the command line;`,
    `  ${"".padEnd(34)} or set ${DEBUG_ENV}=1)`,
    "",
    "exit codes:",
    "  0    done",
    "  1    an error of the input (flags, files, the disk), in one line on stderr",
    "       (resize_images_to_resolution: some images were skipped)",
    "  2    bad flags (resize_images_to_resolution: any error of the input)",
    `  ${EXIT_INTERNAL_ERROR}   an internal error, a bug in lorakit`,
    "  130  interrupted",
  ].join("\n");
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

/**
 * Failures that escape the awaited call chain (a promise nobody awaited, an error thrown in a
 * callback) are reported like the others and end the process, instead of Deno's raw trace.
 */
export function reportEscapedErrors(): void {
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    Deno.exit(reportFailure(event.reason));
  });
  globalThis.addEventListener("error", (event) => {
    event.preventDefault();
    Deno.exit(reportFailure(event.error ?? event.message));
  });
}

/**
 * Entry point: `lorakit [--debug] <tool> [args]`; returns the process exit code. `tools` is the
 * tool table (another one only in tests of the error reporting).
 */
export async function run(
  argv: string[],
  tools: Record<string, ToolEntry> = TOOLS,
): Promise<number> {
  quietGlProbe();
  const { args, debug } = takeDebugFlag(argv);
  if (debug) setDebug(true);
  const [tool, ...rest] = args;
  if (!tool || tool === "-h" || tool === "--help") {
    console.log(usage(tools));
    return tool ? 0 : 2;
  }
  const entry = Object.hasOwn(tools, tool) ? tools[tool] : undefined;
  if (!entry) {
    console.error(`lorakit: unknown tool '${tool}'.\n\n${usage(tools)}`);
    return 2;
  }
  try {
    return await (await entry.load())(rest);
  } catch (e) {
    return reportFailure(e);
  }
}

if (import.meta.main) {
  reportEscapedErrors();
  Deno.exit(await run(Deno.args));
}
