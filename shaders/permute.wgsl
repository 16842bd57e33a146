// out[i] = x[src(i)]: a general axis permutation. For each output coordinate k the input stride
// of the axis it came from is given, so one pass decomposes i and gathers.
struct Params {
  n: u32,
  rank: u32,
  pad0: u32,
  pad1: u32,
  outShape: array<vec4<u32>, 2>,
  inStride: array<vec4<u32>, 2>,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  var rem = i;
  var src = 0u;
  for (var k = i32(p.rank) - 1; k >= 0; k--) {
    let d = at(p.outShape, u32(k));
    src += (rem % d) * at(p.inStride, u32(k));
    rem = rem / d;
  }
  out[i] = x[src];
}
