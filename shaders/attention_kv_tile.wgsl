// Keys and values of one tile of BK rows from key row t0 on, f32, zero past D (so the q side
// needs no mask for them). Consecutive invocations load consecutive slices of a key row:
// coalesced, f16 stays f16.
var<workgroup> kt: array<vec4f, BK * DV>;
var<workgroup> vt: array<vec4f, BK * DV>;

fn stageKV(t0: u32, kbase: u32, lid: u32) {
  for (var e = lid; e < BK * DV; e += WG) {
    let j = e % DV;
    let ko = kbase + min(t0 + e / DV, p.tk - 1u) * rowStride() + j * 4u;
    kt[e] = ld_k(ko) * keep(j);
    vt[e] = ld_v(ko) * keep(j);
  }
}
