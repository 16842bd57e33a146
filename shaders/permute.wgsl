// out[i] = x[src(i)]: a general axis permutation. For each output coordinate k the input stride
// of the axis it came from is given, so one pass decomposes i and gathers.
// Bindings and uniform block: generated from the descriptor in gpu/ops/shape.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  out[i] = x[stridedOffset(i, p.rank, p.outShape, p.inStride)];
}
