/**
 * Uniform blocks as the host builds them: a list of 32-bit words, each tagged u32, i32 or f32,
 * written into the submit's uniform arena (`uniform_arena.ts`). `runtime.ts` re-exports both
 * names, so ops import them from there.
 *
 * @module
 */

/** A value written into a uniform block: `u(x)` for u32/i32, `f(x)` for f32. */
export class UniformWriter {
  private words: number[] = [];
  private kinds: ("u" | "i" | "f")[] = [];
  u(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("u"));
    return this;
  }
  i(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("i"));
    return this;
  }
  f(...xs: number[]): this {
    for (const x of xs) (this.words.push(x), this.kinds.push("f"));
    return this;
  }
  /** Size in bytes, padded to 16 (the uniform address space rounds struct sizes to 16). */
  get byteLength(): number {
    return Math.max(4, Math.ceil(this.words.length / 4) * 4) * 4;
  }
  /** Write the block at word `at` of the three views of one buffer. */
  writeTo(u: Uint32Array, i: Int32Array, f: Float32Array, at: number): void {
    const words = this.words, kinds = this.kinds;
    const n = this.byteLength / 4;
    for (let k = 0; k < n; k++) {
      const w = k < words.length ? words[k] : 0, kind = kinds[k];
      if (kind === "f") f[at + k] = w;
      else if (kind === "i") i[at + k] = w;
      else u[at + k] = w >>> 0;
    }
  }
}

/** Shorthand for a new uniform block. */
export function uniforms(): UniformWriter {
  return new UniformWriter();
}
