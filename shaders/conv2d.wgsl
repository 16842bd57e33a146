// Convolution as an implicit GEMM over kernel taps, NCHW in and out. Each invocation owns RM
// output pixels (strided by WG, so neighbouring lanes read neighbouring pixels) times CN output
// channels; the channel block comes from workgroup_id.y only, so the packed-weight loads are the
// same address for every lane and llvmpipe can issue them as scalar loads plus a broadcast.
// For each tap the source offsets and their validity are computed once, then the reduction runs
// over source channels with no bounds arithmetic in the inner loop.
//   MODE 0 (forward):    dst = conv(src = x, wt[tap][cin][cout]), src pixel = o*stride + k - pad
//   MODE 1 (grad input): dst = convT(src = dy, wt[tap][cout][cin]), src pixel = (o + pad - k) /
//                        stride when that divides exactly (the transposed convolution).
// pad is the top padding for rows and the left one for columns; the bottom and right padding
// only set the output size (the bounds test on the source covers them).
// Requires RM, CN (multiple of 4), WG, MODE. Accumulates in f32. The `// @...` lines are expanded
// by gpu/ops/conv2d.ts into straight-line code over named registers (acc<r>_<j>, a<r>, b<j>):
// llvmpipe does not unroll the loops itself, and unrolling is worth 1.5x there.
// Bindings and uniform block: generated from the descriptor in gpu/ops/conv_headers.ts.

const CN4: u32 = CN / 4u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let cb = wid.y;
  let m0 = wid.x * WG * RM + lid;
  let hdwd = p.hd * p.wd;
  let hsws = p.hs * p.ws;
  var nOff: array<u32, RM>;
  var oh: array<i32, RM>;
  var ow: array<i32, RM>;
  for (var r = 0u; r < RM; r++) {
    let m = min(m0 + r * WG, p.m - 1u);
    let n = m / hdwd;
    let pix = m - n * hdwd;
    nOff[r] = n * p.cs * hsws;
    oh[r] = i32(pix / p.wd);
    ow[r] = i32(pix % p.wd);
  }
  // @acc-decl
  let s = i32(p.stride);
  let padT = i32(p.padTop);
  let padL = i32(p.padLeft);
  let rowStep = p.cdPad / 4u;
  for (var t = 0u; t < p.taps; t++) {
    let kh = i32(t / p.kw);
    let kw = i32(t % p.kw);
    var base: array<u32, RM>;
    var ok: array<bool, RM>;
    for (var r = 0u; r < RM; r++) {
      var ih: i32;
      var iw: i32;
      var valid: bool;
      if (MODE == 0u) {
        ih = oh[r] * s + kh - padT;
        iw = ow[r] * s + kw - padL;
        valid = true;
      } else {
        let th = oh[r] + padT - kh;
        let tw = ow[r] + padL - kw;
        valid = th >= 0 && tw >= 0 && th % s == 0 && tw % s == 0;
        ih = th / s;
        iw = tw / s;
      }
      valid = valid && ih >= 0 && iw >= 0 && ih < i32(p.hs) && iw < i32(p.ws);
      ok[r] = valid;
      base[r] = nOff[r] + u32(clamp(ih, 0, i32(p.hs) - 1)) * p.ws +
        u32(clamp(iw, 0, i32(p.ws) - 1));
    }
    var wi = t * p.cs * rowStep + cb * CN4;
    for (var c = 0u; c < p.cs; c++) {
      // @inner
      wi += rowStep;
    }
  }
  var acc: array<vec4<f32>, RM * CN4>;
  // @acc-gather
  for (var r = 0u; r < RM; r++) {
    let m = m0 + r * WG;
    if (m < p.m) {
      let n = m / hdwd;
      let pix = m - n * hdwd;
      for (var j = 0u; j < CN4; j++) {
        for (var e = 0u; e < 4u; e++) {
          let co = cb * CN + j * 4u + e;
          if (co < p.cd) {
            let bv = select(0.0, f32(bias[co]), p.hasBias == 1u);
            let o = (n * p.cd + co) * hdwd + pix;
            dst[o] = T(p.alpha * acc[r * CN4 + j][e] + bv);
          }
        }
      }
    }
  }
}
