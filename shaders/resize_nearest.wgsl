// Nearest-neighbour resize of the last two axes (H, W) to any size, planes = all leading axes,
// with PyTorch's rule for `F.interpolate(mode="nearest", size=...)`: src = floor(dst * in / out),
// here in exact integer arithmetic. h, w are the input's sizes and oh, ow the output's.
//   resize: out[q][y][x] = src[q][y * h / oh][x * w / ow]   (one invocation per output element)
//   grad:   out[q][y][x] = sum of src[q][i][j] over the output pixels (i, j) that read input pixel
//           (y, x): i in [ceil(y * oh / h), ceil((y + 1) * oh / h)), j likewise; one invocation
//           per input element gathers them, so no two invocations write one element.
// Bindings and uniform block: generated from the descriptor in gpu/ops/resize_nearest.ts.

@compute @workgroup_size(WG)
fn resize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts output elements.
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let c = split3(i, p.ow, p.oh);  // (x, y, q)
  out[i] = src[(c.z * p.h + c.y * p.h / p.oh) * p.w + c.x * p.w / p.ow];
}

// The first output index along an axis whose source index is at least `s`: ceil(s * o / n).
fn firstReader(s: u32, o: u32, n: u32) -> u32 {
  return (s * o + n - 1u) / n;
}

@compute @workgroup_size(WG)
fn grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  // n counts gradient (= forward input) elements; src is the output's gradient.
  let i = gid.x + gid.y * nwg.x * WG;
  if (i >= p.n) { return; }
  let x = i % p.w;
  let y = (i / p.w) % p.h;
  let q = i / (p.w * p.h);
  let y0 = firstReader(y, p.oh, p.h);
  let y1 = firstReader(y + 1u, p.oh, p.h);
  let x0 = firstReader(x, p.ow, p.w);
  let x1 = firstReader(x + 1u, p.ow, p.w);
  var s = 0.0;
  for (var r = y0; r < y1; r++) {
    let row = (q * p.oh + r) * p.ow;
    for (var c = x0; c < x1; c++) {
      s += f32(src[row + c]);
    }
  }
  out[i] = T(s);
}
