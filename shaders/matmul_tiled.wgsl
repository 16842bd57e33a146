// Workgroup-tiled GEMM for hardware GPUs: C[z] = alpha * sum over r < nRed of op(A[z, r]) *
// op(B[z, r]) (+ bias) (+ R[z], a residual of C's shape); alpha and R only in the variants that
// scale or add a residual.
// A 16 x 16 workgroup owns a BM x BN block of C and each invocation a TM x TN register block made
// of 4 x 4 sub-blocks 64 rows / columns apart, so that neighbouring lanes read neighbouring vec4s
// of the staged tiles (no bank conflicts; lanes of one row share a broadcast). Each step of the K
// loop stages a BM x BK slice of A and a BK x BN slice of B in workgroup memory, k-major and in
// f32 (an f16 operand is converted once, while staging), then every invocation reads them BK times.
// Split-K: grid z runs over output batches x splits; split s covers k in [s * kChunk, +kChunk)
// and writes an f32 partial sum that `shaders/split_k_reduce.wgsl` adds up before the epilogue
// (alpha, bias, residual).
// `gpu/ops/tiled_codegen.ts` fills in the @-delimited parts: the operand loads (plain row- or
// column-major operands with vec4 loads where aligned, or the gathers of a convolution computed as
// an implicit GEMM), the unrolled register block and the store (row-major or NCHW); the bindings
// marker becomes the Params block (gpu/ops/gemm_params.ts) and the bindings.
@BINDINGS@

var<workgroup> As: array<vec4<f32>, BK * BM / 4u>;
var<workgroup> Bs: array<vec4<f32>, BK * BN / 4u>;

@compute @workgroup_size(16, 16)
fn main(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(local_invocation_id) lid3: vec3u,
  @builtin(local_invocation_index) lid: u32,
) {
  let tx = lid3.x;
  let ty = lid3.y;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  let z = wid.z / p.splits;
  let split = wid.z % p.splits;
  let kBegin = split * p.kChunk;
  let kEnd = min(p.K, kBegin + p.kChunk);
@PRELUDE@
@ACC@
  for (var r = 0u; r < p.nRed; r++) {
    let aOff = z * p.aOut + r * p.aRed;
    let bOff = z * p.bOut + r * p.bRed;
    for (var k0 = kBegin; k0 < kEnd; k0 += BK) {
@LOAD@
      workgroupBarrier();
      for (var kk = 0u; kk < BK; kk++) {
@COMPUTE@
      }
      workgroupBarrier();
    }
  }
@STORE@
}
