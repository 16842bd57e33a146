// LayerNorm over the last dimension, one workgroup per row: two-pass mean/variance in f32, then
// y = xhat * w + b. Saves mean and 1/std per row for the backward kernels.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }  // uniform per workgroup, so barriers stay uniform
  let base = row * p.C;
  let stats2 = meanRstd(base, p.C, lid);
  let mean = stats2.x;
  let rstd = stats2.y;
  for (var i = lid; i < p.C; i += WG) {
    y[base + i] = T((f32(x[base + i]) - mean) * rstd * f32(w[i]) + f32(b[i]));
  }
  if (lid == 0u) {
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
  }
}
