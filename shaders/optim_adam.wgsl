// Fused Adam(W) step, in place, for f32 moments. Two orderings of the decoupled weight decay:
//   BNB == 0 (torch.optim.AdamW): p -= lr*wd*p, then p -= (lr/bc1) * m / (sqrt(v)/sqrt(bc2) + eps)
//   BNB == 1 (bitsandbytes' 32-bit kernel, used by AdamW8bit below min_8bit_size): p += step_size
//     * m / (sqrt(v) + sqrt(bc2)*eps) with step_size = -lr*sqrt(bc2)/bc1, then p *= 1 - lr*wd
// The gradient is multiplied by the uniform `gscale` and by gs[0], a GPU scalar (clipping factor),
// so a factor computed on the GPU needs no read-back.
// A negative gs[0] marks a step the fp16 loss scaler skips (a gradient overflowed): nothing is
// written, so parameters and state stay as they were.
// Bindings and uniform block: generated from the descriptor in gpu/optim/sources.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (skipped(i)) { return; }
  let g = scaledGrad(i);
  var w = f32(param[i]);
  let mi = p.b1 * m[i] + (1.0 - p.b1) * g;
  let vi = p.b2 * v[i] + (1.0 - p.b2) * g * g;
  m[i] = mi;
  v[i] = vi;
  if (BNB == 1u) {
    let c2 = sqrt(p.bc2);
    w = w + (-p.lr * c2 / p.bc1) * (mi / (sqrt(vi) + c2 * p.eps));
    w = f32(T(w)) * (1.0 - p.lr * p.wd);
  } else {
    w = w - p.lr * p.wd * w;
    w = w - (p.lr / p.bc1) * mi / (sqrt(vi) / sqrt(p.bc2) + p.eps);
  }
  param[i] = T(w);
}
