// Broadcasting binary op: out[i] = OP(a[ia], b[ib]). Index maps use per-input strides over the
// output's (up to 6) dimensions, with stride 0 on broadcast dimensions.
// Bindings and uniform block: generated from the descriptor in gpu/ops/elementwise_raw.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  // One pass over the dimensions for both inputs (at comes from strided.wgsl).
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = at(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ia += c * at(p.sa, u32(k));
    ib += c * at(p.sb, u32(k));
  }
  let x = f32(a[ia]);
  let y = f32(b[ib]);
  out[i] = T(OPX);
}
