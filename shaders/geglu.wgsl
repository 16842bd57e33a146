// GEGLU: x [..., 2F] -> out [..., F] = a * gelu(gate), with a = x[..., :F], gate = x[..., F:]
// (diffusers' GEGLU: `hidden, gate = proj(x).chunk(2, -1); hidden * gelu(gate)`, exact erf GELU).
// The backward entry writes dx [..., 2F] from g [..., F].
// Bindings and uniform block: generated from the descriptor in gpu/ops/geglu.ts.

// The normal CDF Phi(z) = 0.5 * erfc(-z / sqrt(2)), with erfc from Numerical Recipes' Chebyshev
// fit (erfc_fit.wgsl, relative error under 1.2e-7 for all arguments). Taking erfc of |z| / sqrt(2) and
// reflecting keeps the result relative-accurate for negative z: 1 + erf(z / sqrt(2)) would cancel
// down to a few bits there (GELU 4.5e-7 off at z = -5.8, where the true value is 1e-8).
fn phi(z: f32) -> f32 {
  let a = abs(z) * 0.7071067811865476;
  let t = 1.0 / (1.0 + 0.5 * a);
  let tail = 0.5 * t * erfcFit(a, t);
  return select(1.0 - tail, tail, z < 0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.rows * p.F) { return; }
  let r = i / p.F;
  let c = i % p.F;
  let ia = r * 2u * p.F + c;
  let ig = ia + p.F;
  let a = f32(x[ia]);
  let z = f32(x[ig]);
  let cdf = phi(z);
  if (p.backward == 0u) {
    out[i] = T(a * z * cdf);
  } else {
    let gi = f32(g[i]);
    let pdf = 0.3989422804014327 * exp(-0.5 * z * z);
    out[ia] = T(gi * z * cdf);
    out[ig] = T(gi * a * (cdf + z * pdf));
  }
}
