// Row-major index i of an [outer][mid][inner] view as its (inner, mid, outer) coordinates.
fn split3(i: u32, inner: u32, mid: u32) -> vec3u {
  return vec3u(i % inner, (i / inner) % mid, i / (inner * mid));
}
