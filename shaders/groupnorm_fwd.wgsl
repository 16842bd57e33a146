// GroupNorm forward, one workgroup per (sample, group): two-pass mean and variance in f32 over the
// group's C/G channels x S spatial elements, then y = xhat * w + b, optionally through SiLU.
// Saves mean and 1/std per (sample, group) for the backward kernels.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ng = wid.x;            // n * G + g
  let g = ng % p.G;
  let n = ng / p.G;
  let cpg = p.C / p.G;
  let count = cpg * p.S;
  let base = (n * p.C + g * cpg) * p.S;  // the group's elements are contiguous in NC(S)
  let stats2 = meanRstd(base, count, lid);
  let mean = stats2.x;
  let rstd = stats2.y;
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
