// Reductions for the optimizers, one entry point each (entry points bind disjoint variables):
//   sumsq:      per-workgroup partial sums of (x*scale)^2 over a grid-stride loop, written to
//               out[off + workgroup]; a fixed workgroup count keeps the second stage small.
//   sum_final:  out[slot] = sum of `count` partials (one workgroup).
//   clip_final: the global norm sqrt(sum) and torch's clip factor
//               inScale * min(1, maxNorm / (norm + 1e-6)), both left on the GPU.
// Each entry's bindings are declared at its `// @header` line (gpu/optim/sources.ts).
// @header sumsq

@compute @workgroup_size(WG)
fn sumsq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
         @builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < sq.n; i += nwg.x * WG) {
    let v = f32(sqX[i]) * sq.scale;
    acc += v * v;
  }
  let total = wgSum(acc, lid);
  if (lid == 0u) { sqOut[sq.off + wid.x] = total; }
}

// @header sum_final

fn sumPartials(lid: u32) -> f32 {
  var acc = 0.0;
  for (var i = lid; i < fp.count; i += WG) { acc += fin[i]; }
  return wgSum(acc, lid);
}

@compute @workgroup_size(WG)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
  let total = sumPartials(lid);
  if (lid == 0u) { finOut[fp.slot] = total; }
}

// @header clip_final

@compute @workgroup_size(WG)
fn clip_final(@builtin(local_invocation_index) lid: u32) {
  var acc = 0.0;
  for (var i = lid; i < cp.count; i += WG) { acc += cfin[i]; }
  let total = wgSum(acc, lid);
  if (lid == 0u) {
    let norm = sqrt(total);
    clipNorm[0] = norm;
    clipScale[0] = cp.inScale * min(1.0, cp.maxNorm / (norm + 1e-6));
  }
}
