// Broadcasting binary op: out[i] = OP(a[ia], b[ib]). Index maps use per-input strides over the
// output's (up to 6) dimensions, with stride 0 on broadcast dimensions.
struct Params {
  n: u32,
  rank: u32,
  alpha: f32,
  pad0: u32,
  shape: array<vec4<u32>, 2>,
  sa: array<vec4<u32>, 2>,
  sb: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<uniform> p: Params;

fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  var rem = i;
  var ia = 0u;
  var ib = 0u;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = at(p.shape, u32(k));
    let c = rem % d;
    rem = rem / d;
    ia += c * at(p.sa, u32(k));
    ib += c * at(p.sb, u32(k));
  }
  let x = f32(a[ia]);
  let y = f32(b[ib]);
  out[i] = T(OPX);
}
