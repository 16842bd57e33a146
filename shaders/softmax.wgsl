// Softmax over the last axis: one invocation per row of N elements (three passes: max, sum of
// exp(x - max), write), f32 arithmetic. No workgroup memory or barriers: on lavapipe a barrier
// is a coroutine switch, and rows (77 to 4096 wide) are many.
// Bindings and uniform block: generated from the descriptor in gpu/ops/softmax.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let row = gid.x + gid.y * nwg.x * WG;
  if (row >= p.rows) { return; }
  let base = row * p.n;
  var mx = -3.0e38;
  for (var i = 0u; i < p.n; i++) { mx = max(mx, f32(x[base + i])); }
  var sum = 0.0;
  for (var i = 0u; i < p.n; i++) { sum += exp(f32(x[base + i]) - mx); }
  let inv = 1.0 / sum;
  for (var i = 0u; i < p.n; i++) { y[base + i] = T(exp(f32(x[base + i]) - mx) * inv); }
}
