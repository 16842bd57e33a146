// Attention backward, step 1: delta[i] = rowsum(dO[i] * O[i]) in f32, one invocation per row,
// the first estimate of sum_j P_ij dP_ij for dS = P * (dP - delta); the dQ kernel refines it.
// Constants: D, WG.
struct Params {
  rows: u32,
  tq: u32,
  heads: u32,
  pad0: u32,
}
@group(0) @binding(0) var<storage, read> dout: array<T>;
@group(0) @binding(1) var<storage, read> o: array<T>;
@group(0) @binding(2) var<storage, read_write> delta: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.rows) { return; }
  // Row i = bh * tq + t; in the token layout (heads > 1) it starts at ((b * tq + t) * heads + h) * D.
  let bh = i / p.tq;
  let base = ((bh / p.heads) * p.tq + i % p.tq) * p.heads * D + (bh % p.heads) * D;
  var acc = 0.0;
  for (var d = 0u; d < D; d++) {
    acc += f32(dout[base + d]) * f32(o[base + d]);
  }
  delta[i] = acc;
}
