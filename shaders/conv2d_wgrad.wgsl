// Weight gradient of a convolution as an implicit GEMM reducing over every output pixel:
//   dw[co][ci][tap] = sum over n, oh, ow of dy[n][co][oh][ow] * x[n][ci][oh*s + kh - padTop][...]
// (columns: ow*s + kw - padLeft; the bottom and right padding only set ho and wo).
// One tap per workgroup_id.z; RO output channels per invocation come from workgroup_id.y only, so
// the dy loads are uniform across lanes (one scalar load and a broadcast on llvmpipe), and each
// lane owns CI input channels strided by WG. The pixel loop is uniform too, so the padding test
// is a uniform branch rather than a mask. Requires RO, CI, WG. Accumulates in f32. The `// @...`
// lines are expanded by gpu/ops/conv2d.ts into straight-line code over named registers
// (acc<r>_<j>, g<r>, a<j>), as in conv2d.wgsl.
// Bindings and uniform block: generated from the descriptor in gpu/ops/conv_headers.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let t = wid.z;
  let kh = i32(t / p.kw);
  let kw = i32(t % p.kw);
  let co0 = wid.y * RO;
  let ci0 = wid.x * WG * CI + lid;
  let hw = p.h * p.w;
  let howo = p.ho * p.wo;
  let s = i32(p.stride);
  let padT = i32(p.padTop);
  let padL = i32(p.padLeft);
  // @acc-decl
  var xRow: array<u32, CI>;
  for (var j = 0u; j < CI; j++) {
    xRow[j] = min(ci0 + j * WG, p.cin - 1u) * hw;
  }
  var gRow: array<u32, RO>;
  for (var r = 0u; r < RO; r++) {
    gRow[r] = min(co0 + r, p.cout - 1u) * howo;
  }
  // The valid output columns for this tap: 0 <= ow*s + kw - padL < w.
  let owLo = u32(max(0, (padL - kw + s - 1) / s));
  // (A negative numerator means no column is valid; i32 division would round it towards 0.)
  let num = i32(p.w) - 1 + padL - kw;
  let owHi = u32(select(0, clamp(num / s + 1, 0, i32(p.wo)), num >= 0));
  for (var n = 0u; n < p.n; n++) {
    let xN = n * p.cin * hw;
    let gN = n * p.cout * howo;
    for (var oy = 0u; oy < p.ho; oy++) {
      let ih = i32(oy) * s + kh - padT;
      if (ih < 0 || ih >= i32(p.h)) { continue; }
      let xOff = xN + u32(ih) * p.w;
      let gOff = gN + oy * p.wo;
      for (var ox = owLo; ox < owHi; ox++) {
        let xi = xOff + u32(i32(ox) * s + kw - padL);
        let gi = gOff + ox;
        // @inner
      }
    }
  }
  var acc: array<f32, RO * CI>;
  // @acc-gather
  for (var r = 0u; r < RO; r++) {
    let co = co0 + r;
    for (var j = 0u; j < CI; j++) {
      let ci = ci0 + j * WG;
      if (co < p.cout && ci < p.cin) {
        dw[(co * p.cin + ci) * p.taps + t] = T(acc[r * CI + j]);
      }
    }
  }
}
