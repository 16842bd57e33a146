// out[i] = value.
// Bindings and uniform block: generated from the descriptor in gpu/ops/embedding.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  out[i] = T(p.value);
}
