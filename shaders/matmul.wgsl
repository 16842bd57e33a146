// Register-tiled batched GEMM: C[z] = alpha * sum over r < nRed of op(A[z, r]) * op(B[z, r])
// (+ bias[n]) (+ R[z], a residual of C's shape). alpha and R are read only by the variants that
// scale or add a residual.
// Each invocation owns a TM x TN block of C held in vec4f accumulators; A and B are read straight
// from storage (transposed operands are read transposed, never copied). On lavapipe every
// non-uniform storage load is a per-lane scalar loop, so the cost is per load instruction: a vec4
// load brings four values for the price of one (f16: a vec4<u32> brings eight halves), and a bigger
// register block reuses each loaded value more.
// Workgroup memory does not help there (its loads are the same per-lane loop, plus barriers).
//
// The block's rows and columns are clamped to the last valid row/column, so ragged edges read
// valid (duplicate) data and no load needs a bounds branch; only the final store is masked.
// `gpu/ops/matmul_codegen.ts` fills in the unrolled parts (the @-delimited markers) for one tile
// shape, transpose pair, alignment and bias choice, and the bindings marker becomes the Params
// block (gpu/ops/gemm_params.ts) and the bindings.
@BINDINGS@

@compute @workgroup_size(WX, WY)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_id) lid: vec3u) {
  let M = p.M;
  let N = p.N;
  let K = p.K;
  let m0 = (wid.y * WY + lid.y) * TM;
  let n0 = (wid.x * WX + lid.x) * TN;
  if (m0 >= M || n0 >= N) {
    return;
  }
  // K rounded down to the KS-step loop; the remainder runs one k at a time.
  let Kmain = K - K % KS;
@SETUP@
@ACC@
  for (var r = 0u; r < p.nRed; r++) {
    let aOff = wid.z * p.aOut + r * p.aRed;
    let bOff = wid.z * p.bOut + r * p.bRed;
@BASES@
    for (var k = 0u; k < Kmain; k += KS) {
@STEP@
    }
    for (var k = Kmain; k < K; k++) {
@STEP1@
    }
  }
  let cOff = wid.z * M * N;
@STORE@
}
