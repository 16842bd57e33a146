// bitsandbytes' block-wise 8-bit AdamW step (kOptimizerStatic8bit2StateBlockwise), in place, one
// workgroup per block of BLOCK elements: dequantize m (signed dynamic map) and v (unsigned map)
// with the block's absmax, update them, reduce the new absmax in workgroup memory, update the
// parameter (bitsandbytes' formulation: step_size = -lr*sqrt(bc2)/bc1, eps scaled by sqrt(bc2),
// weight decay after the update), and requantize to the nearest map entry by the same binary
// search bitsandbytes uses. Codes are packed 4 per u32; each thread owns whole words, so no two
// threads write one word. A non-finite gradient leaves its parameter alone and zeroes its
// moments, as bitsandbytes does. A negative gs[0] marks a step the fp16 loss scaler skips: after
// the last barrier the workgroup returns without writing anything.
// Bindings and uniform block: generated from the descriptor in gpu/optim/sources.ts.

const WORDS: u32 = BLOCK / (4u * WG);
const PER: u32 = 4u * WORDS;

var<workgroup> qs: array<f32, 256>;
var<workgroup> qu: array<f32, 256>;
var<workgroup> red1: array<f32, WG>;
var<workgroup> red2: array<f32, WG>;

fn finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

fn signbit(x: f32) -> u32 {
  return bitcast<u32>(x) >> 31u;
}

// quantSigned and quantUnsigned: quant_search.wgsl over qs and qu (the launcher writes them).

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  for (var k = lid; k < 256u; k += WG) {
    qs[k] = qmap[k];
    qu[k] = qmap[256u + k];
  }
  workgroupBarrier();
  let b = wid.x + wid.y * nwg.x;
  let nb = (p.n + BLOCK - 1u) / BLOCK;
  let nWords = (p.n + 3u) / 4u;
  let live = b < nb;
  var am1 = 0.0;
  var am2 = 0.0;
  if (live) {
    am1 = absmax1[b];
    am2 = absmax2[b];
  }
  let gsc = p.gscale * gs[0];
  var s1: array<f32, PER>;
  var s2: array<f32, PER>;
  var ok: array<bool, PER>;
  var mx1 = 0.0;
  var mx2 = 0.0;
  for (var w = 0u; w < WORDS; w++) {
    let word = b * (BLOCK / 4u) + w * WG + lid;
    var c1w = 0u;
    var c2w = 0u;
    if (live && word < nWords) {
      c1w = q1[word];
      c2w = q2[word];
    }
    for (var j = 0u; j < 4u; j++) {
      let k = w * 4u + j;
      let e = word * 4u + j;
      var g = 0.0;
      if (live && e < p.n) { g = f32(grad[e]); }
      ok[k] = live && e < p.n && finite(g);
      var v1 = 0.0;
      var v2 = 0.0;
      if (ok[k]) {
        g = g * gsc;
        v2 = qu[(c2w >> (8u * j)) & 0xffu] * am2;
        v2 = v2 * p.b2 + (1.0 - p.b2) * g * g;
        v1 = qs[(c1w >> (8u * j)) & 0xffu] * am1;
        v1 = v1 * p.b1 + (1.0 - p.b1) * g;
      }
      s1[k] = v1;
      s2[k] = v2;
      mx1 = max(mx1, abs(v1));
      mx2 = max(mx2, abs(v2));
    }
  }
  red1[lid] = mx1;
  red2[lid] = mx2;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      red1[lid] = max(red1[lid], red1[lid + s]);
      red2[lid] = max(red2[lid], red2[lid + s]);
    }
    workgroupBarrier();
  }
  let nm1 = red1[0];
  let nm2 = red2[0];
  if (!live || gs[0] < 0.0) { return; }
  if (lid == 0u) {
    absmax1[b] = nm1;
    absmax2[b] = nm2;
  }
  for (var w = 0u; w < WORDS; w++) {
    let word = b * (BLOCK / 4u) + w * WG + lid;
    if (word >= nWords) { continue; }
    var c1w = 0u;
    var c2w = 0u;
    for (var j = 0u; j < 4u; j++) {
      let k = w * 4u + j;
      let e = word * 4u + j;
      let v1 = s1[k];
      let v2 = s2[k];
      if (ok[k]) {
        var x = f32(param[e]);
        x = x + p.stepSize * (v1 / (sqrt(v2) + p.c2 * p.eps));
        x = f32(T(x));
        if (p.wd > 0.0) { x = x * (1.0 - p.lr * p.wd); }
        param[e] = T(x);
      }
      // An all-zero block (absmax 0) stores the codes of 0; any code dequantizes to 0 there.
      var c1 = quantSigned(select(0.0, v1 / nm1, nm1 > 0.0));
      // Keep the sign of m through quantization (bitsandbytes does the same correction).
      if (signbit(qs[c1]) != signbit(v1)) {
        c1 = select((c1 + 255u) & 0xffu, (c1 + 1u) & 0xffu, v1 > 0.0);
      }
      let c2 = quantUnsigned(select(0.0, v2 / nm2, nm2 > 0.0));
      c1w = c1w | (c1 << (8u * j));
      c2w = c2w | (c2 << (8u * j));
    }
    q1[word] = c1w;
    q2[word] = c2w;
  }
}
