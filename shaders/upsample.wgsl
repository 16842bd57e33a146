// Nearest-neighbour 2x upsampling of the last two axes (H, W), planes = all leading axes.
//   up:   out[q][y][x] = src[q][y / 2][x / 2]           (one invocation per output element)
//   down: out[q][y][x] = sum of src[q][2y + i][2x + j]  (the gradient: one per input element)
struct Params {
  n: u32,
  h: u32,
  w: u32,
  p0: u32,
}
@group(0) @binding(0) var<storage, read> src: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn up(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts output elements; h, w are the input's sizes.
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let w2 = 2u * p.w;
  let x = i % w2;
  let y = (i / w2) % (2u * p.h);
  let q = i / (w2 * 2u * p.h);
  out[i] = src[(q * p.h + y / 2u) * p.w + x / 2u];
}

@compute @workgroup_size(WG)
fn down(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts output (= forward input) elements; h, w are their sizes.
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let x = i % p.w;
  let y = (i / p.w) % p.h;
  let q = i / (p.w * p.h);
  let w2 = 2u * p.w;
  let b = (q * 2u * p.h + 2u * y) * w2 + 2u * x;
  let s = f32(src[b]) + f32(src[b + 1u]) + f32(src[b + w2]) + f32(src[b + w2 + 1u]);
  out[i] = T(s);
}
