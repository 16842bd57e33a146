// GroupNorm backward for the input, one workgroup per (sample, group). With gy the gradient at the
// affine output (through SiLU when fused, recomputed from x), dxhat = gy * w and
// dx = rstd * (dxhat - mean(dxhat) - (xhat - mean(xhat)) * mean(dxhat * xhat)).
// mean(xhat) is 0 in exact arithmetic but not for the rounded mean; subtracting it keeps
// sum(dx) = 0 to rounding, which matters where the true sum is exactly 0: a per-channel bias
// feeding a GroupNorm with one channel per group (time_emb_proj) gets no gradient at all.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

// Gradient at the affine output: through SiLU when fused.
fn gradAffine(i: u32, c: u32, xhat: f32) -> f32 {
  var g = f32(gy[i]);
  if (p.silu == 1u) {
    var v = xhat;
    if (p.hasAffine == 1u) { v = v * f32(w[c]) + f32(b[c]); }
    let s = 1.0 / (1.0 + exp(-v));
    g = g * s * (1.0 + v * (1.0 - s));
  }
  return g;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let ng = wid.x;
  let g = ng % p.G;
  let n = ng / p.G;
  let cpg = p.C / p.G;
  let count = cpg * p.S;
  let base = (n * p.C + g * cpg) * p.S;
  let mean = stats[2u * ng];
  let rstd = stats[2u * ng + 1u];
  var a1 = 0.0;
  var a2 = 0.0;
  var a3 = 0.0;
  for (var i = lid; i < count; i += WG) {
    let c = g * cpg + i / p.S;
    let xhat = (f32(x[base + i]) - mean) * rstd;
    var d = gradAffine(base + i, c, xhat);
    if (p.hasAffine == 1u) { d = d * f32(w[c]); }
    a1 += d;
    a2 += d * xhat;
    a3 += xhat;
  }
  let m1 = wgSum(a1, lid) / f32(count);
  let m2 = wgSum(a2, lid) / f32(count);
  let m3 = wgSum(a3, lid) / f32(count);
  for (var i = lid; i < count; i += WG) {
    let c = g * cpg + i / p.S;
    let xhat = (f32(x[base + i]) - mean) * rstd;
    var d = gradAffine(base + i, c, xhat);
    if (p.hasAffine == 1u) { d = d * f32(w[c]); }
    dx[base + i] = T(rstd * (d - m1 - (xhat - m3) * m2));
  }
}
