// LayerNorm backward for the input, one workgroup per row:
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = gy * w.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }
  let base = row * p.C;
  let mean = stats[2u * row];
  let rstd = stats[2u * row + 1u];
  var a1 = 0.0;
  var a2 = 0.0;
  for (var i = lid; i < p.C; i += WG) {
    let xhat = (f32(x[base + i]) - mean) * rstd;
    let d = f32(gy[base + i]) * f32(w[i]);
    a1 += d;
    a2 += d * xhat;
  }
  let m1 = wgSum(a1, lid) / f32(p.C);
  let m2 = wgSum(a2, lid) / f32(p.C);
  for (var i = lid; i < p.C; i += WG) {
    let xhat = (f32(x[base + i]) - mean) * rstd;
    let d = f32(gy[base + i]) * f32(w[i]);
    dx[base + i] = T(rstd * (d - m1 - xhat * m2));
  }
}
