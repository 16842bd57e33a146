// Copies along one axis of a tensor viewed as [outer][axis][inner] (row-major), for concat and
// slice and their gradients.
//   window: dst[o][d][i] = src[o][d + off][i] when 0 <= d + off < sLen, else 0  (slice, and the
//           gradient of slice/concat as a zero-padded window; off may be negative)
//   place:  dst[o][d + off][i] = src[o][d][i], elements of dst outside the window untouched
//           (writes one input of a concat into its place)
// Bindings and uniform block: generated from the descriptor in gpu/ops/concat.ts.

@compute @workgroup_size(WG)
fn window(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts dst elements.
  let k = gid.x + gid.y * nwg.x * WG;
  if (k >= p.n) { return; }
  let c = split3(k, p.inner, p.dLen);  // (i, d, o)
  let sd = i32(c.y) + p.off;
  var v = T(0.0);
  if (sd >= 0 && sd < i32(p.sLen)) {
    v = src[(c.z * p.sLen + u32(sd)) * p.inner + c.x];
  }
  dst[k] = v;
}

@compute @workgroup_size(WG)
fn place(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts src elements.
  let k = gid.x + gid.y * nwg.x * WG;
  if (k >= p.n) { return; }
  let c = split3(k, p.inner, p.sLen);  // (i, d, o)
  dst[(c.z * p.dLen + c.y + u32(p.off)) * p.inner + c.x] = src[k];
}
