// GroupNorm forward, one workgroup per (sample, group): two-pass mean and variance in f32 over the
// group's C/G channels x S spatial elements, then y = xhat * w + b, optionally through SiLU.
// Saves mean and 1/std per (sample, group) for the backward kernels.
struct Params {
  C: u32,
  S: u32,
  G: u32,
  eps: f32,
  silu: u32,
  hasAffine: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read_write> y: array<T>;
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<uniform> p: Params;

// wgSum comes from wg_sum.wgsl (prepended by the launcher).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ng = wid.x;            // n * G + g
  let g = ng % p.G;
  let n = ng / p.G;
  let cpg = p.C / p.G;
  let count = cpg * p.S;
  let base = (n * p.C + g * cpg) * p.S;  // the group's elements are contiguous in NC(S)
  var acc = 0.0;
  for (var i = lid; i < count; i += WG) { acc += f32(x[base + i]); }
  let mean = wgSum(acc, lid) / f32(count);
  var acc2 = 0.0;
  for (var i = lid; i < count; i += WG) {
    let d = f32(x[base + i]) - mean;
    acc2 += d * d;
  }
  let rstd = inverseSqrt(wgSum(acc2, lid) / f32(count) + p.eps);
  for (var i = lid; i < count; i += WG) {
    let c = g * cpg + i / p.S;
    var v = (f32(x[base + i]) - mean) * rstd;
    if (p.hasAffine == 1u) { v = v * f32(w[c]) + f32(b[c]); }
    if (p.silu == 1u) { v = v / (1.0 + exp(-v)); }
    y[base + i] = T(v);
  }
  if (lid == 0u) {
    stats[2u * ng] = mean;
    stats[2u * ng + 1u] = rstd;
  }
}
