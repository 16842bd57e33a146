// Attention backward, dQ: parallel over query rows (no atomics). Workgroup (x, bh) owns WG * R
// query rows of head bh. P is recomputed from Q, K and the forward's LSE2 (base 2):
//   P = exp2(scale2 * q.k - LSE2), dS = P (dO.v - D), dQ = scale * sum dS k.
// Same template rules as attention_fwd.wgsl ($r rows, $j slices, <<sum>>, [[statements]]).
//
// D must be sum_j P_j dP_j over the very P and dP used here, so that sum_j dS_j = 0 as for the
// exact softmax gradient. dQ (and dK summed over keys) is a sum that cancels: every key's term
// shares the component sum_j dS_j * k_mean, so any mismatch between D and the P, dP in use turns
// into an error of D * mismatch * |k| against a result that can be 1e-4 of that. The incoming
// delta, rowsum(dO * O) (computed here from the forward's output), carries the forward's rounding
// of O (summed over keys, often with cancellation) and of its normaliser, several times float32's
// own; it is corrected in the same pass: with dS0 = P (dP - delta),
//   D = delta + sum dS0 / sum P,  dQ = scale * (sum dS0 k - (D - delta) * sum P k),
// the correction small, so computed to full relative precision. The corrected D is written out
// for the dK/dV kernel, which runs after this one and recomputes P and dP bit for bit alike.
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let first = wid.x * WG * R;
  let rs = rowStride();
  let qbase = headBase(bh, p.tq);
  let kbase = headBase(bh, p.tk);
  let row$r = first + $ru * WG + lid;
  let i$r = min(row$r, p.tq - 1u);
  let qo$r = qbase + i$r * rs;
  let q$r_$j = ld_q(qo$r + $ju * 4u) * keep($ju);
  let g$r_$j = ld_g(qo$r + $ju * 4u) * keep($ju);
  var a$r_$j = vec4f(0.0);
  var b$r_$j = vec4f(0.0);
  var sd$r = 0.0;
  var sp$r = 0.0;
  let L$r = lse[bh * p.tq + i$r];
  // The first estimate of D, rowsum(dO * O), from the forward's output row (O is stored like Q).
  let dl$r = hsum(<<g$r_$j * ld_o(qo$r + $ju * 4u)>>);

  var kend = p.tk;
  if (CAUSAL) { kend = min(p.tk, first + WG * R); }
  for (var c = 0u; c < kend; c++) {
    let ko = kbase + c * rs;
    let k$j = ld_k(ko + $ju * 4u);
    let v$j = ld_v(ko + $ju * 4u);
    // The scale multiplies the dot product (not q) so that the dK/dV kernel gets the same bits.
    var e$r = exp2(hsum(<<q$r_$j * k$j>>) * p.scale2 - L$r);
    if (CAUSAL) { e$r = select(0.0, e$r, c <= row$r); }
    let ds$r = e$r * (hsum(<<g$r_$j * v$j>>) - dl$r);
    a$r_$j += ds$r * k$j;
    b$r_$j += e$r * k$j;
    sd$r += ds$r;
    sp$r += e$r;
  }

  let corr$r = select(0.0, sd$r / sp$r, sp$r > 0.0);
  if (row$r < p.tq) { delta[bh * p.tq + row$r] = dl$r + corr$r; }
  if (row$r < p.tq) { [[st_dq(qo$r, $ju, (a$r_$j - corr$r * b$r_$j) * p.scale);]] }
}
