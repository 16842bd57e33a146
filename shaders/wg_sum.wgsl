// Workgroup sum of one f32 per invocation (tree reduction in workgroup memory). Every
// invocation gets the total; all must call it (it contains barriers).
var<workgroup> red: array<f32, WG>;

fn wgSum(v: f32, lid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
