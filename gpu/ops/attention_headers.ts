/**
 * The bindings and uniform blocks of the attention passes, shared by the plain kernels
 * (`attention.ts`) and the tiled ones (`attention_tiled.ts`), and the WGSL helpers they share.
 * Storage arrays are of `S`, the prelude's alias (vec4<T> when D % 4 == 0, else T).
 *
 * @module
 */
import headsSrc from "../../shaders/attention_heads.wgsl" with { type: "text" };
import partsSrc from "../../shaders/attention_parts.wgsl" with { type: "text" };
import kvTileSrc from "../../shaders/attention_kv_tile.wgsl" with { type: "text" };
import { type KernelHeader, withHeader } from "../kernel_header.ts";

/** The backward passes' uniform block. */
const BWD = "tq tk: u32; scale2 scale: f32; heads pad0 pad1 pad2: u32";

const HEADERS: Record<"fwd" | "dq" | "dkdv", KernelHeader> = {
  fwd: {
    bindings: "q k v: S; o: rw S; lse: rw f32",
    params: "tq tk: u32; scale2: f32; heads: u32",
  },
  dq: { bindings: "q k v g o: S; lse: f32; delta: rw f32; dq: rw S", params: BWD },
  dkdv: { bindings: "q k v g: S; lse delta: f32; dk dv: rw S", params: BWD },
};

/**
 * The source of attention pass `pass` from its expanded `body`: the header in front, and after it
 * the helpers the body uses: the head addressing, and for the tiled kernels the merge of a row's
 * parts (and the K/V tile staging of the passes over keys).
 */
export function attentionSource(pass: keyof typeof HEADERS, tiled: boolean, body: string): string {
  const helpers = [headsSrc];
  if (tiled) helpers.push(partsSrc, ...(pass === "dkdv" ? [] : [kvTileSrc]));
  return withHeader(HEADERS[pass], body, ...helpers);
}
