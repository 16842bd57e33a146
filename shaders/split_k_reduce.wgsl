// Sum of the split-K partial results of shaders/matmul_tiled.wgsl, then the GEMM epilogue:
// out[i] = alpha * (sum over s of part[s * size + i]) (+ bias[(i / biasDiv) % biasMod]) (+ res[i]),
// cast to the output type. The bias index covers a row-major GEMM (biasDiv 1, biasMod N) and an
// NCHW convolution (pixels, channels); res has the output's shape.
// Requires WG; the launcher adds the bias and residual bindings (those it uses), the uniform
// binding, and the epilogue statements.
struct Params {
  size: u32,
  splits: u32,
  biasDiv: u32,
  biasMod: u32,
  // Multiplies the sum (not the bias or residual) in the variants that scale.
  alpha: f32,
  p0: u32,
  p1: u32,
  p2: u32,
}
@group(0) @binding(0) var<storage, read> part: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<T>;
// @bindings

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.size) {
    return;
  }
  var s = 0.0;
  for (var k = 0u; k < p.splits; k++) {
    s += part[k * p.size + i];
  }
  // @epilogue
  out[i] = T(s);
}
