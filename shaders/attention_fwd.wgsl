// Flash-style attention forward: O = softmax(scale * Q K^T) V without materialising the score
// matrix. Q is [BH, TQ, D], K and V are [BH, TK, D], row-major, or (p.heads > 1) the token
// layouts [B, TQ, heads * D] and [B, TK, heads * D] with O stored like Q. Workgroup (x, bh) owns WG * R
// query rows of head bh; invocation `lid` owns rows first + r * WG + lid (r < R). Each row keeps a
// running max m, sum l and an f32 accumulator (online softmax in base 2: scores are
// scale * log2(e) * q.k); keys and values are read once per workgroup step at an address every lane shares.
// Only LSE2 = m + log2(l) per row is stored for the backward pass.
//
// Template (expanded by gpu/ops/attention.ts before compiling): a line with `$r` repeats for each
// owned row r < R, with `$j` for each 4-wide slice j < DV of the head dim; `<<e>>` is the sum of
// e over j and `[[s]]` the statements s for every j. Unrolled code keeps the rows in registers:
// lavapipe turns dynamically indexed private arrays into gathers. `S`, `ld_*`, `st_*`, `keep` and
// `hsum` come from the generated prelude.
// Bindings and uniform block: generated from the descriptor in gpu/ops/attention_headers.ts.

// A score for masked keys: exp2 of it minus any running max is exactly 0.
const MASKED: f32 = -3.0e38;
// The running max starts finite so that exp2(m_old - m_new) is never inf - inf.
const M0: f32 = -1.0e30;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let bh = wid.y;
  let first = wid.x * WG * R;
  let rs = rowStride();
  let qbase = headBase(bh, p.tq);
  let kbase = headBase(bh, p.tk);
  let row$r = first + $ru * WG + lid;
  let qo$r = qbase + min(row$r, p.tq - 1u) * rs;
  let q$r_$j = ld_q(qo$r + $ju * 4u) * keep($ju);
  var a$r_$j = vec4f(0.0);
  var m$r = M0;
  var l$r = 0.0;

  var kend = p.tk;
  if (CAUSAL) { kend = min(p.tk, first + WG * R); }
  for (var c = 0u; c < kend; c++) {
    let ko = kbase + c * rs;
    let k$j = ld_k(ko + $ju * 4u);
    let v$j = ld_v(ko + $ju * 4u);
    // Scaled after the dot product, as the backward kernels recompute it.
    var s$r = hsum(<<q$r_$j * k$j>>) * p.scale2;
    if (CAUSAL) { s$r = select(MASKED, s$r, c <= row$r); }
    // Rescale only when the max grows: after the first keys almost no lane takes this branch.
    if (s$r > m$r) { let al = exp2(m$r - s$r); m$r = s$r; l$r *= al; [[a$r_$j *= al;]] }
    let e$r = exp2(s$r - m$r);
    l$r += e$r;
    a$r_$j += e$r * v$j;
  }

  if (row$r < p.tq) { let inv = 1.0 / l$r; [[st_o(qo$r, $ju, a$r_$j * inv);]] lse[bh * p.tq + row$r] = m$r + log2(l$r); }
}
