// Sinusoidal timestep embedding as diffusers' get_timestep_embedding computes it in f32:
// freq_k = exp(-ln(maxPeriod) * k / (half - shift)), args = t * freq_k, [sin, cos], optionally
// flipped to [cos, sin] (flip_sin_to_cos = True for SD's U-Net).
struct Params {
  B: u32,
  dim: u32,
  flip: u32,
  shift: f32,
  maxPeriod: f32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<storage, read> t: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= p.B * p.dim) { return; }
  let b = i / p.dim;
  let j = i % p.dim;
  let half = p.dim / 2u;
  var v = 0.0;
  if (j < 2u * half) {
    var k = j % half;
    let firstHalf = j < half;
    let exponent = -log(p.maxPeriod) * f32(k) / (f32(half) - p.shift);
    let arg = t[b] * exp(exponent);
    // Unflipped order is [sin, cos]; flipped is [cos, sin].
    let useSin = firstHalf != (p.flip == 1u);
    v = select(cos(arg), sin(arg), useSin);
  }
  out[i] = T(v);
}
