// Attention backward dK and dV, hardware family: the pass of attention_bwd_dkdv.wgsl (same
// bindings and formulas) with FlashAttention-2 tiling: workgroup (x, bh) owns ROWS key rows of
// head bh, with k, v and the dK, dV accumulators in registers, and SPLIT invocations per key row,
// each taking a part of every BQ-row tile of Q and dO (with the rows' LSE2 and delta) staged in
// workgroup memory; the parts' sums are merged at the end. P and dP are computed exactly as
// attention_tiled_dq.wgsl computes them (q . k and dO . v, products in the same order, scaled
// after the dot product): the delta that kernel corrected holds only for those very bits.
// Template rules as attention_tiled_fwd.wgsl.
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

const PART: u32 = BQ / SPLIT;

// Query and upstream-gradient rows of one tile, f32, zero past D; (LSE2, delta) per row.
var<workgroup> qt: array<vec4f, BQ * DV>;
var<workgroup> gt: array<vec4f, BQ * DV>;
var<workgroup> ld: array<vec2f, BQ>;

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
  let ko = kbase + min(row, p.tk - 1u) * rs;
  let k_$j = ld_k(ko + $ju * 4u) * keep($ju);
  let v_$j = ld_v(ko + $ju * 4u) * keep($ju);
  var dk_$j = vec4f(0.0);
  var dv_$j = vec4f(0.0);

  // Causal: a query before this workgroup's first key sees none of its keys.
  var t0 = 0u;
  if (CAUSAL) { t0 = first; }
  for (; t0 < p.tq; t0 += BQ) {
    for (var e = lid; e < BQ * DV; e += WG) {
      let j = e % DV;
      let qo = qbase + min(t0 + e / DV, p.tq - 1u) * rs + j * 4u;
      qt[e] = ld_q(qo) * keep(j);
      gt[e] = ld_g(qo) * keep(j);
    }
    for (var c = lid; c < BQ; c += WG) {
      let r = bh * p.tq + min(t0 + c, p.tq - 1u);
      ld[c] = vec2f(lse[r], delta[r]);
    }
    workgroupBarrier();
    let c1 = min(PART * (part + 1u), p.tq - t0);
    for (var c = PART * part; c < c1; c++) {
      let qb = c * DV;
      let x = ld[c];
      var e = exp2(hsum(<<qt[qb + $ju] * k_$j>>) * p.scale2 - x.x);
      if (CAUSAL) { e = select(0.0, e, t0 + c >= row); }
      let ds = e * (hsum(<<gt[qb + $ju] * v_$j>>) - x.y);
      dv_$j += e * gt[qb + $ju];
      dk_$j += ds * qt[qb + $ju];
    }
    workgroupBarrier();
  }

  // Sum the parts of each key row into part 0, slice by slice through `xch`.
  dk_$j = partSum(dk_$j, lid);
  dv_$j = partSum(dv_$j, lid);

  if (part == 0u && row < p.tk) { [[st_dk(ko, $ju, dk_$j * p.scale); st_dv(ko, $ju, dv_$j);]] }
}
