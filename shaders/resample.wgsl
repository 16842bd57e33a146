// Separable 8-bit image resampling from per-axis tables (first source index + `taps` weights per
// output index; source indices clamp to the edge). Entry `horizontal` filters every source row
// into an intermediate buffer of 32-bit sums; entry `vertical` filters columns of that buffer and
// rounds to 8 bits the way OpenCV's path for the plan does. KIND (prepended) selects the path:
//   0 fixed  (INTER_LANCZOS4): integer sums of 11-bit weights, (sum + 2^21) >> 22
//   1 cubic  (INTER_CUBIC): float32 multiply-adds from the last tap back, rounded to even, for
//            columns below `simd_end`; the fixed rule for the rest (OpenCV's scalar tail)
//   2 linear (INTER_AREA enlarging): OpenCV's 16-bit SIMD formula
//   3 float  (INTER_AREA shrinking, non-integer factor): float32 sums, rounded to even
//   4 box    (INTER_AREA shrinking, integer factor): integer box sums
// Integer kinds keep the intermediate sums as i32 (exact); the float kind as f32 bits. Pixels are
// bytes packed four to a u32, in both the source and the result.
// Bindings and uniform block: generated from the descriptor in gpu/ops/resample.ts.

fn src_byte(i: u32) -> u32 {
  return (src[i >> 2u] >> ((i & 3u) * 8u)) & 255u;
}

@compute @workgroup_size(WG)
fn horizontal(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * WG;
  if (t >= p.n) { return; }
  let row_len = p.out_size * p.ch;
  let r = t / row_len;
  let rem = t - r * row_len;
  let d = rem / p.ch;
  let c = rem - d * p.ch;
  let last = i32(p.in_size) - 1;
  let base = r * p.in_size;
  let s0 = start[d];
  let wb = d * p.taps;
  if (KIND == 3u) {
    var acc = 0.0;
    for (var k = 0u; k < p.taps; k++) {
      let s = u32(clamp(s0 + i32(k), 0, last));
      acc = acc + f32(src_byte((base + s) * p.ch + c)) * weights[wb + k];
    }
    dst[t] = bitcast<u32>(acc);
  } else {
    var acc = 0i;
    for (var k = 0u; k < p.taps; k++) {
      let s = u32(clamp(s0 + i32(k), 0, last));
      acc = acc + i32(src_byte((base + s) * p.ch + c)) * i32(weights[wb + k]);
    }
    dst[t] = bitcast<u32>(acc);
  }
}

fn sat16(v: i32) -> i32 {
  return clamp(v, -32768, 32767);
}

// One output byte at (output row d, intermediate column col).
fn vertical_one(d: u32, col: u32) -> i32 {
  let row_len = p.ch;
  let last = i32(p.in_size) - 1;
  let s0 = start[d];
  let wb = d * p.taps;
  if (KIND == 3u) {
    var acc = 0.0;
    for (var k = 0u; k < p.taps; k++) {
      let w = weights[wb + k];
      if (w == 0.0) { continue; }
      let s = u32(clamp(s0 + i32(k), 0, last));
      acc = acc + bitcast<f32>(src[s * row_len + col]) * w;
    }
    return i32(round(acc));
  }
  if (KIND == 1u && col < p.simd_end) {
    // Taps 3, 2, 1, 0 in that order, each weight scaled by 2^-22 (exact in float32).
    var acc = 0.0;
    for (var j = 0u; j < 4u; j++) {
      let k = 3u - j;
      let s = u32(clamp(s0 + i32(k), 0, last));
      let h = f32(bitcast<i32>(src[s * row_len + col]));
      acc = h * (weights[wb + k] * (1.0 / 4194304.0)) + acc;
    }
    return i32(round(acc));
  }
  if (KIND == 2u) {
    let h0 = bitcast<i32>(src[u32(clamp(s0, 0, last)) * row_len + col]);
    let h1 = bitcast<i32>(src[u32(clamp(s0 + 1, 0, last)) * row_len + col]);
    let a = sat16(h0 >> 4u) * i32(weights[wb]);
    let b = sat16(h1 >> 4u) * i32(weights[wb + 1u]);
    return (sat16((a >> 16u) + (b >> 16u)) + 2) >> 2u;
  }
  var acc = 0i;
  for (var k = 0u; k < p.taps; k++) {
    let s = u32(clamp(s0 + i32(k), 0, last));
    acc = acc + bitcast<i32>(src[s * row_len + col]) * i32(weights[wb + k]);
  }
  if (KIND == 4u) {
    if (p.simd_end == 1u) { return (acc + 2) >> 2u; }
    return i32(round(f32(acc) * p.box_scale));
  }
  return (acc + (1 << 21u)) >> 22u;
}

@compute @workgroup_size(WG)
fn vertical(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  let t = gid.x + gid.y * nwg.x * WG;
  if (t >= p.n) { return; }
  var word = 0u;
  for (var j = 0u; j < 4u; j++) {
    let i = t * 4u + j;
    if (i >= p.n_bytes) { break; }
    let d = i / p.ch;
    let col = i - d * p.ch;
    let v = u32(clamp(vertical_one(d, col), 0, 255));
    word = word | (v << (j * 8u));
  }
  dst[t] = word;
}
