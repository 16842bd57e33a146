/**
 * Kernel headers from descriptors: the `struct Params {...}` block and the
 * `@group(0) @binding(i) var<storage, ...> name: array<E>;` lines of a kernel are generated from a
 * short description of its bindings and uniform fields, so the shader files hold only their
 * bodies. The generated lines are the ones `kernel.ts` reads the binding kinds (and so the
 * explicit pipeline layout) from: storage bindings in order from 0, the uniform block after them.
 *
 * Launchers call these inside a kernel's build callback, so a lookup by key builds nothing.
 *
 * @module
 */

/**
 * Declarations as WGSL writes them, grouped by type: `"x w b: T; y: rw T; stats: rw f32"` is
 * x, w, b of type T, then y and stats. For storage bindings the type is the array element type,
 * prefixed `rw ` for a `read_write` binding (else `read`); for uniform fields, the field type.
 */
export type Decls = string;

/** A kernel's header: its storage bindings and, when it has one, its uniform block's fields. */
export interface KernelHeader {
  bindings: Decls;
  /** The uniform block's fields in order; it binds after the storage bindings as `p: Params`. */
  params?: Decls;
}

/** The (name, type) pairs of `decls`, in order. */
export function parseDecls(decls: Decls): [string, string][] {
  const out: [string, string][] = [];
  for (const group of decls.split(";")) {
    const colon = group.indexOf(":");
    if (colon < 0) {
      if (group.trim()) throw new Error(`declaration '${group.trim()}' has no type`);
      continue;
    }
    const type = group.slice(colon + 1).trim();
    for (const name of group.slice(0, colon).trim().split(/\s+/)) out.push([name, type]);
  }
  return out;
}

/** `struct <name> { field: type, ... }` as WGSL, one field a line. */
export function wgslStruct(name: string, fields: Decls): string {
  let s = `struct ${name} {\n`;
  for (const [k, t] of parseDecls(fields)) s += `  ${k}: ${t},\n`;
  return s + "}\n";
}

/**
 * The binding lines of `bindings` from @binding(0) on and, when `uniform` is given
 * (`"p: Params"`), the uniform block's line after them.
 */
export function wgslBindings(bindings: Decls, uniform?: string): string {
  let s = "", i = 0;
  for (const [name, t] of parseDecls(bindings)) {
    const rw = t.startsWith("rw ");
    const access = rw ? "read_write" : "read";
    const elem = rw ? t.slice(3).trim() : t;
    s += `@group(0) @binding(${i++}) var<storage, ${access}> ${name}: array<${elem}>;\n`;
  }
  if (uniform) s += `@group(0) @binding(${i}) var<uniform> ${uniform};\n`;
  return s;
}

/** The header of one kernel: its `Params` struct (if any) and binding lines. */
export function kernelHeader(h: KernelHeader): string {
  if (h.params === undefined) return wgslBindings(h.bindings);
  return wgslStruct("Params", h.params) + wgslBindings(h.bindings, "p: Params");
}

/**
 * `body` with the header of `h` in front of it and the helper snippets `helpers` after it (WGSL
 * declarations may come in any order; the body's own description stays the source's first
 * comment, which the runtime quotes when a pipeline fails).
 */
export function withHeader(h: KernelHeader, body: string, ...helpers: string[]): string {
  return kernelHeader(h) + withHelpers(body, helpers);
}

/** `body`, then the helper snippets `helpers` (on a line of their own). */
export function withHelpers(body: string, helpers: string[]): string {
  if (!helpers.length) return body;
  return body + (body.endsWith("\n") ? "" : "\n") + helpers.join("");
}

/**
 * A builder of `withHeader(h, body, ...helpers)` for `specKernel`, which calls it only when the
 * kernel is first looked up; made once per kernel at module level.
 */
export function headed(h: KernelHeader, body: string, ...helpers: string[]): () => string {
  return () => withHeader(h, body, ...helpers);
}

/**
 * For files whose entry points each declare their own bindings: every line `// @header NAME` of
 * `body` is replaced by `headers[NAME]` (the bindings must sit right before their entry point,
 * see `bindingKinds`). Throws for a marker without a header or a header without a marker.
 */
export function fillHeaders(body: string, headers: Record<string, string>): string {
  const used = new Set<string>();
  const out = body.replace(/^\/\/ @header (\w+)\n/gm, (_, name: string) => {
    const h = headers[name];
    if (h === undefined) throw new Error(`no header '${name}' for this kernel`);
    used.add(name);
    return h;
  });
  for (const name in headers) {
    if (!used.has(name)) throw new Error(`kernel has no '// @header ${name}' line`);
  }
  return out;
}
