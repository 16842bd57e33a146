/**
 * Kernel headers from descriptors: the generated struct and binding lines, and the binding kinds
 * the runtime reads back from them (its pipeline layouts). No GPU needed.
 */
import assert from "node:assert/strict";
import {
  fillHeaders,
  kernelHeader,
  parseDecls,
  wgslBindings,
  wgslStruct,
} from "../gpu/kernel_header.ts";
import { bindingKinds } from "../gpu/kernel.ts";

Deno.test("declarations keep their order and group names by type", () => {
  assert.deepEqual(parseDecls("x w: T; y: rw T; shape: array<vec4<u32>, 2>"), [
    ["x", "T"],
    ["w", "T"],
    ["y", "rw T"],
    ["shape", "array<vec4<u32>, 2>"],
  ]);
  assert.throws(() => parseDecls("x w"), /no type/);
});

Deno.test("a header is the Params struct, then the storage bindings, then the uniform", () => {
  const h = kernelHeader({
    bindings: "x: T; out: rw f32",
    params: "n: u32; eps: f32; pad0 pad1: u32",
  });
  assert.equal(
    h,
    "struct Params {\n  n: u32,\n  eps: f32,\n  pad0: u32,\n  pad1: u32,\n}\n" +
      "@group(0) @binding(0) var<storage, read> x: array<T>;\n" +
      "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n" +
      "@group(0) @binding(2) var<uniform> p: Params;\n",
  );
  assert.deepEqual(bindingKinds(h + "fn main() {}", "main"), ["r", "w", "u"]);
  assert.equal(kernelHeader({ bindings: "a: u32" }), wgslBindings("a: u32"));
  assert.equal(wgslStruct("S", "a: u32"), "struct S {\n  a: u32,\n}\n");
});

Deno.test("per-entry headers replace their markers, and a missing one is an error", () => {
  const body = "// @header a\nfn a() {}\n// @header b\nfn b() {}\n";
  const src = fillHeaders(body, {
    a: wgslBindings("x: f32", "ap: P"),
    b: wgslBindings("y: rw f32; z: f32", "bp: P"),
  });
  assert.deepEqual(bindingKinds(src, "a").slice(0, 2), ["r", "u"]);
  assert.deepEqual(bindingKinds(src, "b"), ["w", "r", "u"]);
  assert.throws(() => fillHeaders(body, { a: "" }), /no '\/\/ @header b'|no header 'b'/);
  assert.throws(() => fillHeaders(body, { a: "", b: "", c: "" }), /'\/\/ @header c'/);
});
