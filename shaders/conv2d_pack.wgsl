// Repack a convolution weight [Cout][Cin][taps] (checkpoint layout) into the f32 GEMM operand
// [taps][a][bPad] read by conv2d.wgsl: a runs over the source channels, b over the destination
// channels, zero-padded to a multiple of the kernel's channel block. The strides choose between
// the forward packing (a = cin, b = cout) and the grad-input packing (a = cout, b = cin).
struct Params {
  n: u32,
  na: u32,
  nb: u32,
  nbPad: u32,
  sa: u32,
  sb: u32,
  taps: u32,
  p0: u32,
}
@group(0) @binding(0) var<storage, read> w: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let b = i % p.nbPad;
  let a = (i / p.nbPad) % p.na;
  let t = i / (p.nbPad * p.na);
  var v = 0.0;
  if (b < p.nb) { v = f32(w[a * p.sa + b * p.sb + t]); }
  out[i] = v;
}
