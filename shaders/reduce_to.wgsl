// Sum over a set of dimensions: one workgroup per output element; its threads stride over the
// reduced index space and combine in workgroup memory. Accumulates in f32.
// Bindings and uniform block: generated from the descriptor in gpu/ops/reduce.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  var acc = 0.0;
  if (o < p.nOut) {
    let base = stridedOffset(o, p.nKeep, p.keepShape, p.keepStride);
    for (var r = lid; r < p.nRed; r += WG) {
      acc += f32(x[base + stridedOffset(r, p.nRedDims, p.redShape, p.redStride)]);
    }
  }
  let total = wgSum(acc, lid);
  if (lid == 0u && o < p.nOut) { out[o] = T(total * p.scale); }
}
