// The fp16 loss scaler's step, decided on the GPU (torch's GradScaler: unscale_ / step / update):
//   flag[0] != 0: a gradient overflowed. Then gs = -1, which every optimizer kernel reads as
//     "skip this step", the scale is multiplied by `backoff` and the growth tracker reset;
//   else gs = inScale / scale (times, with clipping, min(1, maxNorm / (norm + 1e-6)) of the
//     unscaled gradients), and after `interval` clean steps in a row the scale grows by `growth`.
// `norm` holds the global norm of the still-scaled gradients on entry (clipping only) and that of
// the unscaled ones on exit. rec = [overflowed, scale used, new scale, new tracker] is read by the
// host later, without waiting, to keep its step count and its copy of the scale.
// Bindings and uniform block: generated from the descriptor in gpu/optim/sources.ts.

@compute @workgroup_size(1)
fn main() {
  let s = scale[0];
  let overflowed = flag[0] != 0u;
  var factor = p.inScale / s;
  if (p.clip == 1u) {
    let n = norm[0] / s;
    norm[0] = n;
    factor = factor * min(1.0, p.maxNorm / (n + 1e-6));
  }
  var next = s;
  var t = tracker[0] + 1.0;
  if (overflowed) {
    next = s * p.backoff;
    t = 0.0;
  } else if (t >= p.interval) {
    next = s * p.growth;
    t = 0.0;
  }
  gs[0] = select(factor, -1.0, overflowed);
  scale[0] = next;
  tracker[0] = t;
  rec[0] = select(0.0, 1.0, overflowed);
  rec[1] = s;
  rec[2] = next;
  rec[3] = t;
}
