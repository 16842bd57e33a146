// The tiled kernels' merge: SPLIT invocations share each of the ROWS rows of a workgroup
// (invocation lid: row lid % ROWS, part lid / ROWS), each with partial results to combine.
var<workgroup> xch: array<vec4f, WG>;

// For part 0, the sum over the parts of x, in part order; for the other parts, x. All invocations
// must call it (it contains barriers).
fn partSum(x: vec4f, lid: u32) -> vec4f {
  xch[lid] = x;
  workgroupBarrier();
  var t = x;
  if (lid / ROWS == 0u) {
    t = vec4f(0.0);
    for (var s = 0u; s < SPLIT; s++) { t += xch[s * ROWS + lid % ROWS]; }
  }
  workgroupBarrier();
  return t;
}
