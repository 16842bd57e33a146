// Attention forward, hardware family (FlashAttention-2 tiling): O = softmax(scale * Q K^T) V.
// Layouts and the stored LSE2 (base 2) as in attention_fwd.wgsl. Workgroup (x, bh) owns ROWS
// query rows of head bh and has SPLIT invocations per row: invocation `lid` owns row
// first + lid % ROWS (q and the output accumulator in registers) and, of every tile of BK keys
// that the workgroup stages in workgroup memory, the part lid / ROWS (BK / SPLIT keys), with its
// own running max, sum and accumulator. Within a warp all invocations read the same tile key,
// so workgroup memory broadcasts it. At the end the parts of a row are merged to one softmax.
//
// Template rules as attention_fwd.wgsl, with one row per invocation: a line with `$j` repeats for
// each 4-wide slice j < DV of the head dim, `<<e>>` sums e over j, `[[s]]` repeats s for each j.
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

// A score for masked keys: exp2 of it minus any running max is exactly 0.
const MASKED: f32 = -3.0e38;
// The running max starts finite so that exp2(m_old - m_new) is never inf - inf, and a part that
// saw no key weighs exp2(M0 - m) = 0 in the merge.
const M0: f32 = -1.0e30;
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
  let qo = qbase + min(row, p.tq - 1u) * rs;
  let q_$j = ld_q(qo + $ju * 4u) * keep($ju);
  var a_$j = vec4f(0.0);
  var m = M0;
  var l = 0.0;

  var kend = p.tk;
  if (CAUSAL) { kend = min(p.tk, first + ROWS); }
  for (var t0 = 0u; t0 < kend; t0 += BK) {
    stageKV(t0, kbase, lid);
    workgroupBarrier();
    let c1 = min(PART * (part + 1u), kend - t0);
    for (var c = PART * part; c < c1; c++) {
      let kb = c * DV;
      // Scaled after the dot product, as the backward kernels recompute it.
      var s = hsum(<<q_$j * kt[kb + $ju]>>) * p.scale2;
      if (CAUSAL) { s = select(MASKED, s, t0 + c <= row); }
      if (s > m) { let al = exp2(m - s); m = s; l *= al; [[a_$j *= al;]] }
      let e = exp2(s - m);
      l += e;
      a_$j += e * vt[kb + $ju];
    }
    workgroupBarrier();
  }

  // Merge the parts: a common max, each part's sum and accumulator rescaled to it.
  xch[lid] = vec4f(m, l, 0.0, 0.0);
  workgroupBarrier();
  var mm = M0;
  for (var s = 0u; s < SPLIT; s++) { mm = max(mm, xch[s * ROWS + lr].x); }
  var lt = 0.0;
  for (var s = 0u; s < SPLIT; s++) { let x = xch[s * ROWS + lr]; lt += x.y * exp2(x.x - mm); }
  let f = exp2(m - mm);
  workgroupBarrier();
  a_$j = partSum(a_$j * f, lid);

  if (part == 0u && row < p.tq) { let inv = 1.0 / lt; [[st_o(qo, $ju, a_$j * inv);]] lse[bh * p.tq + row] = mm + log2(lt); }
}
