// Reductions for the optimizers, one entry point each (entry points bind disjoint variables):
//   sumsq:      per-workgroup partial sums of (x*scale)^2 over a grid-stride loop, written to
//               out[off + workgroup]; a fixed workgroup count keeps the second stage small.
//   sum_final:  out[slot] = sum of `count` partials (one workgroup).
//   clip_final: the global norm sqrt(sum) and torch's clip factor
//               inScale * min(1, maxNorm / (norm + 1e-6)), both left on the GPU.
struct SqParams {
  n: u32,
  off: u32,
  scale: f32,
  pad0: u32,
}
@group(0) @binding(0) var<storage, read> sqX: array<T>;
@group(0) @binding(1) var<storage, read_write> sqOut: array<f32>;
@group(0) @binding(2) var<uniform> sq: SqParams;

var<workgroup> part: array<f32, WG>;

fn treeSum(lid: u32) {
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { part[lid] += part[lid + s]; }
    workgroupBarrier();
  }
}

@compute @workgroup_size(WG)
fn sumsq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < sq.n; i += nwg.x * WG) {
    let v = f32(sqX[i]) * sq.scale;
    acc += v * v;
  }
  part[lid] = acc;
  treeSum(lid);
  if (lid == 0u) { sqOut[sq.off + wid.x] = part[0]; }
}

struct FinalParams {
  count: u32,
  slot: u32,
  maxNorm: f32,
  inScale: f32,
}
@group(0) @binding(0) var<storage, read> fin: array<f32>;
@group(0) @binding(1) var<storage, read_write> finOut: array<f32>;
@group(0) @binding(2) var<uniform> fp: FinalParams;

fn sumPartials(lid: u32) -> f32 {
  var acc = 0.0;
  for (var i = lid; i < fp.count; i += WG) { acc += fin[i]; }
  part[lid] = acc;
  treeSum(lid);
  return part[0];
}

@compute @workgroup_size(WG)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
  let total = sumPartials(lid);
  if (lid == 0u) { finOut[fp.slot] = total; }
}

@group(0) @binding(0) var<storage, read> cfin: array<f32>;
@group(0) @binding(1) var<storage, read_write> clipScale: array<f32>;
@group(0) @binding(2) var<storage, read_write> clipNorm: array<f32>;
@group(0) @binding(3) var<uniform> cp: FinalParams;

@compute @workgroup_size(WG)
fn clip_final(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < cp.count; i += WG) { acc += cfin[i]; }
  part[lid] = acc;
  treeSum(lid);
  if (lid == 0u) {
    let norm = sqrt(part[0]);
    clipNorm[0] = norm;
    clipScale[0] = cp.inScale * min(1.0, cp.maxNorm / (norm + 1e-6));
  }
}
