// Fused AdamW step, in place, PyTorch's formulation (decoupled weight decay):
//   p -= lr * wd * p
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// Moments are f32 whatever the parameter dtype; `gscale` multiplies the gradient first (gradient
// clipping and loss-scale removal without another pass).
struct Params {
  n: u32,
  lr: f32,
  b1: f32,
  b2: f32,
  eps: f32,
  wd: f32,
  bc1: f32,
  bc2: f32,
  gscale: f32,
  pad0: u32,
  pad1: u32,
  pad2: u32,
}
@group(0) @binding(0) var<storage, read_write> param: array<T>;
@group(0) @binding(1) var<storage, read> grad: array<T>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let g = f32(grad[i]) * p.gscale;
  var w = f32(param[i]);
  w = w - p.lr * p.wd * w;
  let mi = p.b1 * m[i] + (1.0 - p.b1) * g;
  let vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  w = w - (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
  param[i] = T(w);
}
