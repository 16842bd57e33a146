// GroupNorm backward for the affine parameters, one workgroup per channel:
// dw[c] = sum over samples and positions of gy * xhat, db[c] = sum of gy.
// Bindings and uniform block: generated from the descriptor in gpu/ops/norm.ts.

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let c = wid.x;
  let g = c / (p.C / p.G);
  let wc = f32(w[c]);
  let bc = f32(b[c]);
  var a1 = 0.0;
  var a2 = 0.0;
  let total = p.N * p.S;
  for (var k = lid; k < total; k += WG) {
    let n = k / p.S;
    let s = k % p.S;
    let i = (n * p.C + c) * p.S + s;
    let ng = n * p.G + g;
    let xhat = (f32(x[i]) - stats[2u * ng]) * stats[2u * ng + 1u];
    var d = f32(gy[i]);
    if (p.silu == 1u) {
      let v = xhat * wc + bc;
      let sg = 1.0 / (1.0 + exp(-v));
      d = d * sg * (1.0 + v * (1.0 - sg));
    }
    a1 += d * xhat;
    a2 += d;
  }
  let s1 = wgSum(a1, lid);
  let s2 = wgSum(a2, lid);
  if (lid == 0u) {
    dw[c] = T(s1);
    db[c] = T(s2);
  }
}
