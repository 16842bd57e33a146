// Embedding backward as a scatter-add without float atomics: the host groups token positions by
// id (CSR: for unique id u, positions pos[start[u]..start[u+1]]), and one thread per (u, c) sums
// the rows of g and writes dweight[id[u], c]. dweight is zero-filled beforehand.
// Bindings and uniform block: generated from the descriptor in gpu/ops/embedding.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.nUnique * p.C) { return; }
  let u = i / p.C;
  let c = i % p.C;
  let s0 = csr[p.nUnique + u];
  let s1 = csr[p.nUnique + u + 1u];
  let posBase = 2u * p.nUnique + 1u;
  var acc = 0.0;
  for (var k = s0; k < s1; k++) {
    acc += f32(g[csr[posBase + k] * p.C + c]);
  }
  dw[csr[u] * p.C + c] = T(acc);
}
