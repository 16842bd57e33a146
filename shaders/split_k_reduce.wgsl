// Sum of the split-K partial results of shaders/matmul_tiled.wgsl, then the GEMM epilogue:
// out[i] = alpha * (sum over s of part[s * size + i]) (+ bias[(i / biasDiv) % biasMod]) (+ res[i]),
// cast to the output type. The bias index covers a row-major GEMM (biasDiv 1, biasMod N) and an
// NCHW convolution (pixels, channels); res has the output's shape.
// Requires WG; the launcher adds the header (gpu/ops/split_k.ts: part, out, then the bias and
// residual bindings it uses, and the uniform block) and the epilogue statements.

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
