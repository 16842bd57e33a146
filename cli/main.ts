/**
 * `lorakit <tool> [args]`: dispatches to one file per tool in cli/.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";

type ToolMain = (args: string[]) => Promise<number>;

/** Tools by name; each module exports `main(args): Promise<number>` (the exit code). */
const TOOLS: Record<string, { about: string; load: () => Promise<ToolMain> }> = {
  engine: {
    about: "show the WebGPU adapter and run a quick engine self-check and benchmark",
    load: async () => (await import("./engine.ts")).main,
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

/** Entry point; returns the process exit code. */
export async function run(argv: string[]): Promise<number> {
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
