/**
 * What the plain attention kernels (`attention.ts`) and the tiled ones (`attention_tiled.ts`)
 * share: the sizes of one launch and the expansion of the WGSL templates (row/slice unrolling,
 * loaders and storers). `attention.ts` re-exports them.
 *
 * @module
 */

/** Sizes of one attention launch. */
export interface AttentionGeometry {
  bh: number;
  tq: number;
  tk: number;
  d: number;
  dv: number;
  /** Heads interleaved in a row (token layout), 1 for the contiguous layout. */
  heads: number;
}

/** Repeat `$r`/`$j` lines and expand `<<sum>>` and `[[statements]]` (see attention_fwd.wgsl). */
export function expandTemplate(src: string, rows: number, slices: number): string {
  const js = Array.from({ length: slices }, (_, j) => j);
  const rs = Array.from({ length: rows }, (_, r) => r);
  const out: string[] = [];
  for (const raw of src.split("\n")) {
    const line = raw
      .replace(
        /<<(.+?)>>/g,
        (_, e: string) => js.map((j) => `(${e.replaceAll("$j", `${j}`)})`).join(" + "),
      )
      .replace(
        /\[\[(.+?)\]\]/g,
        (_, e: string) => js.map((j) => e.replaceAll("$j", `${j}`)).join(" "),
      );
    for (const r of line.includes("$r") ? rs : [-1]) {
      const lr = r < 0 ? line : line.replaceAll("$r", `${r}`);
      for (const j of lr.includes("$j") ? js : [-1]) {
        out.push(j < 0 ? lr : lr.replaceAll("$j", `${j}`));
      }
    }
  }
  return out.join("\n");
}

/**
 * Loaders and storers for the template: with D % 4 == 0 the buffers are `array<vec4<T>>` (one
 * load per slice); otherwise scalar arrays, stores masked to the row's D elements. Streamed
 * operands may read past a row's end: the slices they meet are zeroed by `keep` on the row side.
 */
export function prelude(d: number, loads: string[], stores: string[]): string {
  const vec = d % 4 === 0;
  const lines = [
    `alias S = ${vec ? "vec4<T>" : "T"};`,
    "fn hsum(x: vec4f) -> f32 { return x.x + x.y + x.z + x.w; }",
    "fn keep(j: u32) -> vec4f {",
    "  return select(vec4f(0.0), vec4f(1.0), vec4u(j * 4u) + vec4u(0u, 1u, 2u, 3u) < vec4u(D));",
    "}",
  ];
  for (const b of loads) {
    lines.push(
      vec
        ? `fn ld_${b}(e: u32) -> vec4f { return vec4f(${b}[e / 4u]); }`
        : `fn ld_${b}(e: u32) -> vec4f { let n = arrayLength(&${b}) - 1u; ` +
          `return vec4f(f32(${b}[min(e, n)]), f32(${b}[min(e + 1u, n)]), ` +
          `f32(${b}[min(e + 2u, n)]), f32(${b}[min(e + 3u, n)])); }`,
    );
  }
  for (const b of stores) {
    lines.push(
      vec
        ? `fn st_${b}(ro: u32, j: u32, x: vec4f) { ${b}[(ro + j * 4u) / 4u] = vec4<T>(x); }`
        : `fn st_${b}(ro: u32, j: u32, x: vec4f) { for (var c = 0u; c < 4u; c++) { ` +
          `if (j * 4u + c < D) { ${b}[ro + j * 4u + c] = T(x[c]); } } }`,
    );
  }
  return lines.join("\n") + "\n";
}
