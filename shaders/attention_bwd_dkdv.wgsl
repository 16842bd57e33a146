// Attention backward, dK and dV: parallel over key rows (no atomics). Workgroup (x, bh) owns
// WG * R key rows of head bh. P is recomputed from Q, K and the forward's LSE2 (base 2):
//   P = exp2(scale2 * q.k - LSE2), dV = sum P dO, dS = P (dO.v - D), dK = scale * sum dS q,
// with D per query row as the dQ kernel (run first) corrected it: sum_j P_j dP_j over the same P
// and dP, computed here bit for bit alike (see attention_bwd_dq.wgsl).
// Same template rules as attention_fwd.wgsl ($r rows, $j slices, <<sum>>, [[statements]]).
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let first = wid.x * WG * R;
  let rs = rowStride();
  let qbase = headBase(bh, p.tq);
  let kbase = headBase(bh, p.tk);
  let row$r = first + $ru * WG + lid;
  let ko$r = kbase + min(row$r, p.tk - 1u) * rs;
  let k$r_$j = ld_k(ko$r + $ju * 4u) * keep($ju);
  let v$r_$j = ld_v(ko$r + $ju * 4u) * keep($ju);
  var dk$r_$j = vec4f(0.0);
  var dv$r_$j = vec4f(0.0);

  // Causal: a query before this workgroup's first key sees none of its keys.
  var c0 = 0u;
  if (CAUSAL) { c0 = first; }
  for (var c = c0; c < p.tq; c++) {
    let qo = qbase + c * rs;
    let q$j = ld_q(qo + $ju * 4u);
    let g$j = ld_g(qo + $ju * 4u);
    let L = lse[bh * p.tq + c];
    let dl = delta[bh * p.tq + c];
    var e$r = exp2(hsum(<<k$r_$j * q$j>>) * p.scale2 - L);
    if (CAUSAL) { e$r = select(0.0, e$r, c >= row$r); }
    let ds$r = e$r * (hsum(<<v$r_$j * g$j>>) - dl);
    dv$r_$j += e$r * g$j;
    dk$r_$j += ds$r * q$j;
  }

  if (row$r < p.tk) { [[st_dk(ko$r, $ju, dk$r_$j * p.scale); st_dv(ko$r, $ju, dv$r_$j);]] }
}
