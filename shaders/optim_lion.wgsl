// Lion step (lion-pytorch), in place, f32 momentum:
//   p *= 1 - lr*wd;  p -= lr * sign(b1*m + (1-b1)*g);  m = b2*m + (1-b2)*g
// sign(0) is 0, as torch.sign. The gradient is scaled by `gscale` and the GPU scalar gs[0].
// A negative gs[0] marks a step the fp16 loss scaler skips (a gradient overflowed): nothing is
// written, so parameters and state stay as they were.
// Bindings and uniform block: generated from the descriptor in gpu/optim/sources.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (skipped(i)) { return; }
  let g = scaledGrad(i);
  var w = f32(param[i]) * (1.0 - p.lr * p.wd);
  let mi = m[i];
  w = w - p.lr * sign(p.b1 * mi + (1.0 - p.b1) * g);
  m[i] = p.b2 * mi + (1.0 - p.b2) * g;
  param[i] = T(w);
}
