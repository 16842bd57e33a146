// Sum over a set of dimensions: one workgroup per output element; its threads stride over the
// reduced index space and combine in workgroup memory. Accumulates in f32.
struct Params {
  nOut: u32,
  nRed: u32,
  rank: u32,
  scale: f32,
  // Kept dims (output order): sizes and input strides. Reduced dims: sizes and input strides.
  keepShape: array<vec4<u32>, 2>,
  keepStride: array<vec4<u32>, 2>,
  redShape: array<vec4<u32>, 2>,
  redStride: array<vec4<u32>, 2>,
  nKeep: u32,
  nRedDims: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
@group(0) @binding(2) var<uniform> p: Params;

var<workgroup> partial: array<f32, WG>;

fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let o = wid.x + wid.y * nwg.x;
  var base = 0u;
  if (o < p.nOut) {
    var rem = o;
    for (var k = i32(p.nKeep) - 1; k >= 0; k--) {
      let d = at(p.keepShape, u32(k));
      base += (rem % d) * at(p.keepStride, u32(k));
      rem = rem / d;
    }
  }
  var acc = 0.0;
  if (o < p.nOut) {
    for (var r = lid; r < p.nRed; r += WG) {
      var rem = r;
      var off = base;
      for (var k = i32(p.nRedDims) - 1; k >= 0; k--) {
        let d = at(p.redShape, u32(k));
        off += (rem % d) * at(p.redStride, u32(k));
        rem = rem / d;
      }
      acc += f32(x[off]);
    }
  }
  partial[lid] = acc;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { partial[lid] += partial[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u && o < p.nOut) { out[o] = T(partial[0] * p.scale); }
}
