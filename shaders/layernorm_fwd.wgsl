// LayerNorm over the last dimension, one workgroup per row: two-pass mean/variance in f32, then
// y = xhat * w + b. Saves mean and 1/std per row for the backward kernels.
struct Params {
  R: u32,
  C: u32,
  eps: f32,
  pad0: u32,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

// wgSum comes from wg_sum.wgsl (prepended by the launcher).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  if (row >= p.R) { return; }  // uniform per workgroup, so barriers stay uniform
  let base = row * p.C;
  var acc = 0.0;
  for (var i = lid; i < p.C; i += WG) { acc += f32(x[base + i]); }
  let mean = wgSum(acc, lid) / f32(p.C);
  var acc2 = 0.0;
  for (var i = lid; i < p.C; i += WG) {
    let d = f32(x[base + i]) - mean;
    acc2 += d * d;
  }
  let rstd = inverseSqrt(wgSum(acc2, lid) / f32(p.C) + p.eps);
  for (var i = lid; i < p.C; i += WG) {
    y[base + i] = T((f32(x[base + i]) - mean) * rstd * f32(w[i]) + f32(b[i]));
  }
  if (lid == 0u) {
    stats[2u * row] = mean;
    stats[2u * row + 1u] = rstd;
  }
}
