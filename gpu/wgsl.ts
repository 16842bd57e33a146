/**
 * WGSL source preparation. Kernels are written once against the element type alias `T` and a few
 * named constants; `specialize` prepends the declarations for one dtype and one set of constants,
 * and the runtime caches one pipeline per resulting source.
 *
 * @module
 */
import { type Kernel, rt } from "./runtime.ts";
import type { DType } from "./tensor.ts";

/** Constants prepended as `const NAME = value;` (integers become u32, others f32 unless typed). */
export type Consts = Record<string, number | string>;

/** Prepend `enable f16;` where needed, `alias T = ...;` and the constants. */
export function specialize(source: string, dtype: DType, consts: Consts = {}): string {
  const lines: string[] = [];
  if (dtype === "f16") lines.push("enable f16;");
  lines.push(`alias T = ${dtype};`);
  for (const [k, v] of Object.entries(consts)) {
    if (typeof v === "string") lines.push(`const ${k} = ${v};`);
    else if (Number.isInteger(v)) lines.push(`const ${k}: u32 = ${v}u;`);
    else lines.push(`const ${k}: f32 = ${v};`);
  }
  return lines.join("\n") + "\n" + source;
}

/** Workgroups for `n` threads of `wg` each, split over x and y when x would pass 65535. */
export function grid(n: number, wg: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= 65535) return [groups, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/** The WGSL type of a `pack8` uniform field (read with `at` of shaders/strided.wgsl). */
export const PACK8 = "array<vec4<u32>, 2>";

/** Up to 8 shape or stride values padded with zeros: the `array<vec4<u32>, 2>` uniform layout. */
export function pack8(v: readonly number[]): number[] {
  const out = new Array(8).fill(0);
  v.forEach((x, i) => (out[i] = x));
  return out;
}

/**
 * The kernel of `specialize(source, dtype, consts)` (entry `entry`), found by a short key made of
 * `name`, the dtype and the constants' values, so the source is built only on the first lookup.
 * `source` may be a function that builds the text (header and helpers included); it runs only
 * then. `name` must differ for every distinct `source` text.
 */
export function specKernel(
  name: string,
  source: string | (() => string),
  dtype: DType,
  consts: Consts = {},
  entry = "main",
): Kernel {
  let key = name + "|" + dtype;
  for (const k in consts) key += "|" + consts[k];
  const build = () => specialize(typeof source === "string" ? source : source(), dtype, consts);
  return rt().kernel(key, build, entry);
}

/**
 * A kernel that also adds a residual in its store: `var<storage, read> res: array<T>` goes where
 * the uniform block was (binding `at`), the uniform one binding further, and the store
 * `<dst>[<index>] = T(<value>);` becomes `<dst>[<index>] = T(<value> + f32(res[<index>]));`.
 * Throws when the source no longer has that uniform or store (a kernel edited out from under it).
 */
export function withResidualStore(src: string, at: number, dst: string, index: string): string {
  const uniform = `@group(0) @binding(${at}) var<uniform> p: Params;`;
  const esc = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const store = new RegExp(`${esc(dst)}\\[${esc(index)}\\] = T\\((.*)\\);`);
  if (!src.includes(uniform) || !store.test(src)) {
    throw new Error(`kernel has no uniform at binding ${at} or no store to ${dst}[${index}]`);
  }
  return src
    .replace(
      uniform,
      `@group(0) @binding(${at}) var<storage, read> res: array<T>;\n` +
        `@group(0) @binding(${at + 1}) var<uniform> p: Params;`,
    )
    .replace(store, (_, value: string) => `${dst}[${index}] = T(${value} + f32(res[${index}]));`);
}
