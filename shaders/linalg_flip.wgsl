// Scale a row-major [rows, cols] matrix by a sign vector: per column (mode 0) or per row (mode 1).
struct Params {
  rows: u32,
  cols: u32,
  n: u32,
  mode: u32,
}
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read> sgn: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

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
