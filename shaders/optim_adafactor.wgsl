// Adafactor (transformers.optimization.Adafactor), as a few passes per parameter. A parameter of
// rank >= 2 is viewed as [B, R, C] (B = product of the leading dims) and its second moment is
// factored into row means [B, R] and column means [B, C] of g^2 + eps1; rank 1 keeps a full v.
//   rows:    row[b,r] = beta2t*row + (1-beta2t) * mean_c(g^2 + eps1)   (one workgroup per row)
//   cols:    col[b,c] = beta2t*col + (1-beta2t) * mean_r(g^2 + eps1)   (one thread per column)
//   rowmean: rmean[b] = mean_r(row[b,r])
//   fsumsq:  partial sums of u^2, u = rsqrt(row/rmean) * rsqrt(col) * g
//   vsumsq:  v = beta2t*v + (1-beta2t)*(g^2 + eps1), partial sums of u^2, u = rsqrt(v) * g
//   apply_f / apply_v: u /= max(1, rms(u)/clip); u *= lr (lr = relative step times
//            max(eps2, rms(p)) with scale_parameter, both from sc[] on the GPU); optional first
//            moment m = b1*m + (1-b1)*u; p -= wd*lr*p; p -= u.
// sc[0] holds sum(p^2) from before the update, sc[1] sum(u^2). Gradients are multiplied by
// `gscale` and gs[0] first. Entry points bind disjoint variables, declared where the
// `// @header` lines are (gpu/optim/sources.ts). A negative gs[0] marks a step the fp16 loss
// scaler skips: no state or parameter is written (writes are guarded, not returned from, where a
// barrier follows).

// @header rows

@compute @workgroup_size(WG)
fn rows(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nwg.x;
  let live = row < rp.B * rp.R;
  let sc = rp.gscale * rGs[0];
  var acc = 0.0;
  if (live) {
    for (var c = lid; c < rp.C; c += WG) {
      let g = f32(rGrad[row * rp.C + c]) * sc;
      acc += g * g + rp.eps1;
    }
  }
  let total = wgSum(acc, lid);
  if (live && lid == 0u && rGs[0] >= 0.0) {
    rRow[row] = rp.beta2t * rRow[row] + (1.0 - rp.beta2t) * (total / f32(rp.C));
  }
}

// @header cols

@compute @workgroup_size(WG)
fn cols(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let k = gid.x + gid.y * nwg.x * WG;
  if (k >= cp.B * cp.C || cGs[0] < 0.0) { return; }
  let b = k / cp.C;
  let c = k % cp.C;
  let sc = cp.gscale * cGs[0];
  var acc = 0.0;
  for (var r = 0u; r < cp.R; r++) {
    let g = f32(cGrad[(b * cp.R + r) * cp.C + c]) * sc;
    acc += g * g + cp.eps1;
  }
  cCol[k] = cp.beta2t * cCol[k] + (1.0 - cp.beta2t) * (acc / f32(cp.R));
}

// @header rowmean

@compute @workgroup_size(WG)
fn rowmean(@builtin(global_invocation_id) gid: vec3u) {
  let b = gid.x;
  if (b >= mp.B) { return; }
  var acc = 0.0;
  for (var r = 0u; r < mp.R; r++) { acc += mRow[b * mp.R + r]; }
  mMean[b] = acc / f32(mp.R);
}

// @header fsumsq

fn factoredU(i: u32, g: f32) -> f32 {
  let c = i % fp.C;
  let br = i / fp.C;
  let b = br / fp.R;
  return (inverseSqrt(fRow[br] / fMean[b]) * inverseSqrt(fCol[b * fp.C + c])) * g;
}

@compute @workgroup_size(WG)
fn fsumsq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let sc = fp.gscale * fGs[0];
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < fp.n; i += nwg.x * WG) {
    let u = factoredU(i, f32(fGrad[i]) * sc);
    acc += u * u;
  }
  let total = wgSum(acc, lid);
  if (lid == 0u) { fPart[wid.x] = total; }
}

// @header vsumsq

@compute @workgroup_size(WG)
fn vsumsq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let sc = vp.gscale * vGs[0];
  var acc = 0.0;
  for (var i = wid.x * WG + lid; i < vp.n; i += nwg.x * WG) {
    let g = f32(vGrad[i]) * sc;
    let v = vp.beta2t * vV[i] + (1.0 - vp.beta2t) * (g * g + vp.eps1);
    if (vGs[0] >= 0.0) { vV[i] = v; }
    let u = inverseSqrt(v) * g;
    acc += u * u;
  }
  let total = wgSum(acc, lid);
  if (lid == 0u) { vPart[wid.x] = total; }
}

// Shared tail of apply_f / apply_v: scale u, first moment, weight decay, parameter update.
fn finish(w0: f32, u0: f32, mi: ptr<function, f32>, sumP: f32, sumU: f32, q: Params) -> f32 {
  let nf = f32(q.n);
  var lr = q.relStep;
  if (q.scaleParam == 1u) { lr = lr * max(q.eps2, sqrt(sumP) / sqrt(nf)); }
  var u = u0 / max(1.0, (sqrt(sumU) / sqrt(nf)) / q.clip);
  u = u * lr;
  if (q.useM == 1u) {
    *mi = q.beta1 * *mi + (1.0 - q.beta1) * u;
    u = *mi;
  }
  var w = w0;
  if (q.wd != 0.0) { w = w + w * (-q.wd * lr); }
  return w - u;
}

// @header apply_f

@compute @workgroup_size(WG)
fn apply_f(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= ap.n || aGs[0] < 0.0) { return; }
  let g = f32(aGrad[i]) * ap.gscale * aGs[0];
  let c = i % ap.C;
  let br = i / ap.C;
  let b = br / ap.R;
  let u = (inverseSqrt(aRow[br] / aMean[b]) * inverseSqrt(aCol[b * ap.C + c])) * g;
  var mi = 0.0;
  if (ap.useM == 1u) { mi = aM[i]; }
  let w = finish(f32(aParam[i]), u, &mi, aSc[0], aSc[1], ap);
  if (ap.useM == 1u) { aM[i] = mi; }
  aParam[i] = T(w);
}

// @header apply_v

@compute @workgroup_size(WG)
fn apply_v(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= bp.n || bGs[0] < 0.0) { return; }
  let g = f32(bGrad[i]) * bp.gscale * bGs[0];
  let u = inverseSqrt(bV[i]) * g;
  var mi = 0.0;
  if (bp.useM == 1u) { mi = bM[i]; }
  let w = finish(f32(bParam[i]), u, &mi, bSc[0], bSc[1], bp);
  if (bp.useM == 1u) { bM[i] = mi; }
  bParam[i] = T(w);
}
