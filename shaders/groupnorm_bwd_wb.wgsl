// GroupNorm backward for the affine parameters, one workgroup per channel:
// dw[c] = sum over samples and positions of gy * xhat, db[c] = sum of gy.
struct Params {
  C: u32,
  S: u32,
  G: u32,
  eps: f32,
  silu: u32,
  N: u32,
  pad0: u32,
  pad1: u32,
}
@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> w: array<T>;
@group(0) @binding(2) var<storage, read> b: array<T>;
@group(0) @binding(3) var<storage, read> gy: array<T>;
@group(0) @binding(4) var<storage, read> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> dw: array<T>;
@group(0) @binding(6) var<storage, read_write> db: array<T>;
@group(0) @binding(7) var<uniform> p: Params;

var<workgroup> r1: array<f32, WG>;
var<workgroup> r2: array<f32, WG>;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let g = c / (p.C / p.G);
  let wc = f32(w[c]);
  let bc = f32(b[c]);
  var a1 = 0.0;
  var a2 = 0.0;
  let total = p.N * p.S;
  for (var k = lid; k < total; k += WG) {
    let n = k / p.S;
    let s = k % p.S;
    let i = (n * p.C + c) * p.S + s;
    let ng = n * p.G + g;
    let xhat = (f32(x[i]) - stats[2u * ng]) * stats[2u * ng + 1u];
    var d = f32(gy[i]);
    if (p.silu == 1u) {
      let v = xhat * wc + bc;
      let sg = 1.0 / (1.0 + exp(-v));
      d = d * sg * (1.0 + v * (1.0 - sg));
    }
    a1 += d * xhat;
    a2 += d;
  }
  r1[lid] = a1;
  r2[lid] = a2;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      r1[lid] += r1[lid + s];
      r2[lid] += r2[lid + s];
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    dw[c] = T(r1[0]);
    db[c] = T(r2[0]);
  }
}
