// Embedding lookup: out[t, c] = weight[ids[t], c].
// Bindings and uniform block: generated from the descriptor in gpu/ops/embedding.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.nTok * p.C) { return; }
  let t = i / p.C;
  let c = i % p.C;
  out[i] = weight[min(ids[t], p.V - 1u) * p.C + c];
}
