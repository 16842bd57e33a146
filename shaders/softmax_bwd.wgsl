// Softmax backward over the last axis: dx = y * (g - sum(g * y)), one invocation per row, f32.
// Bindings and uniform block: generated from the descriptor in gpu/ops/softmax.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * WG;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var dot = 0.0;
  for (var i = 0u; i < p.n; i++) { dot += f32(g[base + i]) * f32(y[base + i]); }
  for (var i = 0u; i < p.n; i++) {
    dx[base + i] = T(f32(y[base + i]) * (f32(g[base + i]) - dot));
  }
}
