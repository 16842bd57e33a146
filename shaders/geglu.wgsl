// GEGLU: x [..., 2F] -> out [..., F] = a * gelu(gate), with a = x[..., :F], gate = x[..., F:]
// (diffusers' GEGLU: `hidden, gate = proj(x).chunk(2, -1); hidden * gelu(gate)`, exact erf GELU).
// The backward entry writes dx [..., 2F] from g [..., F].
struct Params {
  rows: u32,
  F: u32,
  backward: u32,
  pad0: u32,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> g: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<uniform> p: Params;

fn erf_f(v: f32) -> f32 {
  let s = sign(v);
  let a = abs(v);
  let t = 1.0 / (1.0 + 0.5 * a);
  let y = 1.0 - t * exp(-a * a - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))));
  return s * y;
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
  let cdf = 0.5 * (1.0 + erf_f(z * 0.7071067811865476));
  if (p.backward == 0u) {
    out[i] = T(a * z * cdf);
  } else {
    let gi = f32(g[i]);
    let pdf = 0.3989422804014327 * exp(-0.5 * z * z);
    out[ia] = T(gi * z * cdf);
    out[ig] = T(gi * a * (cdf + z * pdf));
  }
}
