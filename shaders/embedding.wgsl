// Embedding lookup: out[t, c] = weight[ids[t], c].
struct Params {
  nTok: u32,
  C: u32,
  V: u32,
  pad0: u32,
}
@group(0) @binding(0) var<storage, read> weight: array<T>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<T>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.nTok * p.C) { return; }
  let t = i / p.C;
  let c = i % p.C;
  out[i] = weight[min(ids[t], p.V - 1u) * p.C + c];
}
