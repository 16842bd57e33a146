// Elementwise unary op (forward) or its backward (out = g * f'(x)), chosen by the expression
// substituted for each variant. TO is the output type (differs from T only for casts). `x` is the input value, `g` the upstream gradient.
// Bindings and uniform block: generated from the descriptor in gpu/ops/elementwise_raw.ts.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;

// erf via Abramowitz-Stegun 7.1.26 is too coarse (1.5e-7 abs but poor relative); use a
// rational approximation good to ~1e-7 absolute, which f32 GELU needs (erfcFit, erfc_fit.wgsl).
fn erf_f(v: f32) -> f32 {
  let s = sign(v);
  let a = abs(v);
  let t = 1.0 / (1.0 + 0.5 * a);
  let y = 1.0 - t * erfcFit(a, t);
  return s * y;
}
fn sigmoid_f(v: f32) -> f32 {
  return 1.0 / (1.0 + exp(-v));
}
fn tanh_f(v: f32) -> f32 {
  // tanh() of large |v| can produce NaN on some drivers (exp overflow); clamp first.
  return tanh(clamp(v, -15.0, 15.0));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let x = f32(xs[i]);
  let g = f32(gs[min(i, arrayLength(&gs) - 1u)]);
  out[i] = TO(OPX);
}
