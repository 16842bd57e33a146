// Scale a row-major [rows, cols] matrix by a sign vector: per column (mode 0) or per row (mode 1).
// Bindings and uniform block: generated from the descriptor in gpu/linalg/sign.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) {
    return;
  }
  var k = i % p.cols;
  if (p.mode == 1u) {
    k = i / p.cols;
  }
  dst[i] = src[i] * sgn[k];
}
