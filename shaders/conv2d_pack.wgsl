// Repack a convolution weight [Cout][Cin][taps] (checkpoint layout) into the f32 GEMM operand
// [taps][a][bPad] read by conv2d.wgsl: a runs over the source channels, b over the destination
// channels, zero-padded to a multiple of the kernel's channel block. The strides choose between
// the forward packing (a = cin, b = cout) and the grad-input packing (a = cout, b = cin).
// Bindings and uniform block: generated from the descriptor in gpu/ops/conv_headers.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let c = split3(i, p.nbPad, p.na);  // (b, a, t)
  var v = 0.0;
  if (c.x < p.nb) { v = f32(w[c.y * p.sa + c.x * p.sb + c.z]); }
  out[i] = v;
}
