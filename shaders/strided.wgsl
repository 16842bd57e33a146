// Shapes and strides of up to 8 dimensions packed in `array<vec4<u32>, 2>` uniforms (pack8).
fn at(v: array<vec4<u32>, 2>, k: u32) -> u32 {
  return v[k / 4u][k % 4u];
}

// The offset of row-major index `i` of a tensor of the first `rank` sizes of `shape` in a view
// with the matching `stride`s (0 on broadcast dimensions).
fn stridedOffset(i: u32, rank: u32, shape: array<vec4<u32>, 2>, stride: array<vec4<u32>, 2>) -> u32 {
  var rem = i;
  var off = 0u;
  for (var k = i32(rank) - 1; k >= 0; k--) {
    let d = at(shape, u32(k));
    off += (rem % d) * at(stride, u32(k));
    rem = rem / d;
  }
  return off;
}
