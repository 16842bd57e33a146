/**
 * Kernel families: the same op has kernels shaped for a software driver (few threads, register
 * blocking, no workgroup memory) and for real GPUs (workgroup-memory tiles, hundreds of threads
 * per workgroup, enough workgroups to fill every multiprocessor). The adapter picks the family;
 * `LORAKIT_KERNELS` or `setKernelFamily` forces one, so both are tested on the software driver.
 *
 * @module
 */
import { rt } from "./runtime.ts";

/** Which kernels an op launches. */
export type KernelFamily = "software" | "hardware";

let forced: KernelFamily | null = null;
/** `LORAKIT_KERNELS`, read once: ops ask for the family on every launch. */
let envFamily: KernelFamily | undefined | null = null;

/** `LORAKIT_KERNELS` when it names a family; undefined in a browser or without env access. */
function fromEnv(): KernelFamily | undefined {
  if (envFamily === null) envFamily = readEnv();
  return envFamily;
}

function readEnv(): KernelFamily | undefined {
  try {
    const deno = (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno;
    const v = deno?.env.get("LORAKIT_KERNELS");
    if (v === "software" || v === "hardware") return v;
  } catch {
    // Without --allow-env the adapter decides.
  }
  return undefined;
}

/** The family in force: a forced one, else `LORAKIT_KERNELS`, else the adapter's kind. */
export function kernelFamily(): KernelFamily {
  if (forced) return forced;
  return fromEnv() ?? (rt().gpu.isSoftware ? "software" : "hardware");
}

/** Force a family for this process (tests, benchmarks); `null` returns to the default rule. */
export function setKernelFamily(family: KernelFamily | null): void {
  forced = family;
}
