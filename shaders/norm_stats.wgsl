// Mean and 1/std of the `count` elements of `x` from `base` on, computed by one workgroup in f32
// with two passes (mean, then the mean squared deviation) and `p.eps` added to the variance.
// Every invocation gets both; all must call it. Needs wgSum (wg_sum.wgsl).
fn meanRstd(base: u32, count: u32, lid: u32) -> vec2f {
  var acc = 0.0;
  for (var i = lid; i < count; i += WG) { acc += f32(x[base + i]); }
  let mean = wgSum(acc, lid) / f32(count);
  var acc2 = 0.0;
  for (var i = lid; i < count; i += WG) {
    let d = f32(x[base + i]) - mean;
    acc2 += d * d;
  }
  return vec2f(mean, inverseSqrt(wgSum(acc2, lid) / f32(count) + p.eps));
}
