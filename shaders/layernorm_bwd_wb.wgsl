// LayerNorm backward for weight and bias: each thread owns one column and walks the rows
// (coalesced across the workgroup): dw[c] = sum gy * xhat, db[c] = sum gy.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= p.C) { return; }
  var a1 = 0.0;
  var a2 = 0.0;
  for (var r = 0u; r < p.R; r++) {
    let i = r * p.C + c;
    let xhat = (f32(x[i]) - stats[2u * r]) * stats[2u * r + 1u];
    let g = f32(gy[i]);
    a1 += g * xhat;
    a2 += g;
  }
  dw[c] = T(a1);
  db[c] = T(a2);
}
