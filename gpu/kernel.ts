/**
 * A kernel: one WGSL source and entry point, what its bindings are, and how many threads one of
 * its workgroups has. What the source says about bindings is read once, when the kernel is first
 * looked up, so every later dispatch only needs the kernel's short key.
 *
 * @module
 */

/** How a binding is declared: read-only storage, read-write storage, or a uniform block. */
export type BindingKind = "r" | "w" | "u";

const BINDING_RE =
  /@binding\(\s*(\d+)\s*\)\s*var\s*<\s*(storage|uniform)\s*(?:,\s*(read_write|read)\s*)?>/g;

/**
 * The kind of each binding the entry point `entry` sees, by index. A file may declare several
 * entry points whose bindings share indices (each entry's block comes right before it), so for
 * each index the last declaration before `fn entry(` wins; indices declared only after it fall
 * back to their first declaration.
 */
export function bindingKinds(source: string, entry: string): BindingKind[] {
  const at = entryPosition(source, entry);
  const before = new Map<number, BindingKind>();
  const after = new Map<number, BindingKind>();
  for (const m of source.matchAll(BINDING_RE)) {
    const index = Number(m[1]);
    const kind: BindingKind = m[2] === "uniform" ? "u" : m[3] === "read_write" ? "w" : "r";
    if (m.index! < at) before.set(index, kind);
    else if (!after.has(index)) after.set(index, kind);
  }
  const n = Math.max(-1, ...before.keys(), ...after.keys()) + 1;
  const kinds: BindingKind[] = [];
  for (let i = 0; i < n; i++) kinds.push(before.get(i) ?? after.get(i) ?? "r");
  return kinds;
}

function entryPosition(source: string, entry: string): number {
  const m = new RegExp(`\\bfn\\s+${entry}\\s*\\(`).exec(source);
  return m ? m.index : source.length;
}

/**
 * Threads per workgroup of `entry`: the product of its `@workgroup_size`, with named constants
 * resolved from the `const NAME ... = value;` lines of the source.
 */
export function workgroupThreads(source: string, entry: string): number {
  const at = entryPosition(source, entry);
  const sizes = [...source.slice(0, at).matchAll(/@workgroup_size\(([^)]*)\)/g)];
  const last = sizes[sizes.length - 1];
  if (!last) return 1;
  const consts = new Map<string, number>();
  for (const m of source.matchAll(/\bconst\s+(\w+)\s*(?::\s*\w+\s*)?=\s*([0-9.]+)[uif]?\s*;/g)) {
    consts.set(m[1], Number(m[2]));
  }
  let threads = 1;
  for (const part of last[1].split(",")) {
    const t = part.trim();
    if (!t) continue;
    const v = /^\d+[ui]?$/.test(t) ? parseInt(t) : consts.get(t);
    threads *= v ?? 1;
  }
  return threads;
}

/** A kernel as the runtime keeps it; pipelines are made per binding signature on first use. */
export class Kernel {
  readonly kinds: BindingKind[];
  readonly threadsPerGroup: number;
  /** Pipeline per signature (see `signature`). */
  readonly pipelines: Map<string, GPUComputePipeline> = new Map();

  constructor(
    readonly key: string,
    readonly source: string,
    readonly entry: string,
  ) {
    this.kinds = bindingKinds(source, entry);
    this.threadsPerGroup = workgroupThreads(source, entry);
  }

  /**
   * The binding signature of a dispatch with `buffers` storage bindings and a uniform block of
   * `uniformBytes` (0: none): "rrwu:112" is two read-only and one read-write storage buffer, then
   * a 112-byte uniform block. The block size is part of the layout (its minimum binding size):
   * wgpu checks late-sized bindings against the pipeline last set with a layout, so pipelines
   * that share a layout must also share the uniform size.
   */
  signature(buffers: number, uniformBytes: number): string {
    let sig = "";
    for (let i = 0; i < buffers; i++) sig += this.kinds[i] === "w" ? "w" : "r";
    return uniformBytes ? sig + "u:" + uniformBytes : sig;
  }
}
