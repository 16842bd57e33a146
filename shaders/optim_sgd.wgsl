// torch.optim.SGD step with momentum (and Nesterov), in place, f32 momentum buffer:
//   d = g + wd*p;  buf = first ? d : momentum*buf + (1-dampening)*d
//   d = nesterov ? d + momentum*buf : buf;  p -= lr*d
// torch makes the buffer a copy of d on a parameter's first step (no dampening), hence `first`.
// A negative gs[0] marks a step the fp16 loss scaler skips (a gradient overflowed): nothing is
// written, so parameters and state stay as they were.
// Bindings and uniform block: generated from the descriptor in gpu/optim/sources.ts.

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let i = gid.x + gid.y * nwg.x * WG;
  if (skipped(i)) { return; }
  let w = f32(param[i]);
  var d = scaledGrad(i) + p.wd * w;
  if (p.momentum != 0.0) {
    var b = d;
    if (p.first == 0u) { b = p.momentum * buf[i] + (1.0 - p.dampening) * d; }
    buf[i] = b;
    d = select(b, d + p.momentum * b, p.nesterov == 1u);
  }
  param[i] = T(w - p.lr * d);
}
