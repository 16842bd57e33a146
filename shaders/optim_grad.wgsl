// Element i's gradient times the uniform `gscale` and gs[0], a GPU scalar (a clipping factor
// computed on the GPU needs no read-back).
fn scaledGrad(i: u32) -> f32 {
  return f32(grad[i]) * p.gscale * gs[0];
}

// Whether invocation i writes nothing: past the end, or gs[0] < 0, which marks a step the fp16
// loss scaler skips (a gradient overflowed), so parameters and state stay as they were.
fn skipped(i: u32) -> bool {
  return i >= p.n || gs[0] < 0.0;
}
