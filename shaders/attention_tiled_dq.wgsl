// Attention backward dQ, hardware family: the dQ pass of attention_bwd_dq.wgsl (same bindings,
// same formulas, same delta correction, read its header) with the FlashAttention-2 tiling of
// attention_tiled_fwd.wgsl: ROWS query rows per workgroup, SPLIT invocations per row each taking
// a part of every BK-key tile of K and V staged in workgroup memory; the parts' sums are merged
// at the end. P and dP are computed exactly as attention_tiled_dkdv.wgsl does (the same products
// in the same order, scaled after the dot product), so the corrected delta written here fits the
// probabilities that kernel recomputes bit for bit.
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

const PART: u32 = BK / SPLIT;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let first = wid.x * ROWS;
  let lr = lid % ROWS;
  let part = lid / ROWS;
  let rs = rowStride();
  let qbase = headBase(bh, p.tq);
  let kbase = headBase(bh, p.tk);
  let row = first + lr;
  let i = min(row, p.tq - 1u);
  let qo = qbase + i * rs;
  let q_$j = ld_q(qo + $ju * 4u) * keep($ju);
  let g_$j = ld_g(qo + $ju * 4u) * keep($ju);
  var a_$j = vec4f(0.0);
  var b_$j = vec4f(0.0);
  var sd = 0.0;
  var sp = 0.0;
  let L = lse[bh * p.tq + i];
  // The first estimate of delta, rowsum(dO * O), from the forward's output row.
  let dl = hsum(<<g_$j * ld_o(qo + $ju * 4u)>>);

  var kend = p.tk;
  if (CAUSAL) { kend = min(p.tk, first + ROWS); }
  for (var t0 = 0u; t0 < kend; t0 += BK) {
    stageKV(t0, kbase, lid);
    workgroupBarrier();
    let c1 = min(PART * (part + 1u), kend - t0);
    for (var c = PART * part; c < c1; c++) {
      let kb = c * DV;
      var e = exp2(hsum(<<q_$j * kt[kb + $ju]>>) * p.scale2 - L);
      if (CAUSAL) { e = select(0.0, e, t0 + c <= row); }
      let ds = e * (hsum(<<g_$j * vt[kb + $ju]>>) - dl);
      a_$j += ds * kt[kb + $ju];
      b_$j += e * kt[kb + $ju];
      sd += ds;
      sp += e;
    }
    workgroupBarrier();
  }

  // Sum the parts of each row into part 0, slice by slice through `xch`.
  xch[lid] = vec4f(sd, sp, 0.0, 0.0);
  workgroupBarrier();
  var sdt = 0.0;
  var spt = 0.0;
  for (var s = 0u; s < SPLIT; s++) { let x = xch[s * ROWS + lr]; sdt += x.x; spt += x.y; }
  workgroupBarrier();
  a_$j = partSum(a_$j, lid);
  b_$j = partSum(b_$j, lid);

  let corr = select(0.0, sdt / spt, spt > 0.0);
  if (part == 0u && row < p.tq) { delta[bh * p.tq + row] = dl + corr; }
  if (part == 0u && row < p.tq) { [[st_dq(qo, $ju, (a_$j - corr * b_$j) * p.scale);]] }
}
