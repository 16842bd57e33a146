// Repack a convolution weight [Cout][Cin][taps] (checkpoint layout) into the f32 GEMM operand
// [taps][a][bPad] read by conv2d.wgsl: a runs over the source channels, b over the destination
// channels, zero-padded to a multiple of the kernel's channel block. The strides choose between
// the forward packing (a = cin, b = cout) and the grad-input packing (a = cout, b = cin).

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
