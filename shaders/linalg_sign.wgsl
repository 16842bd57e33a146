// lorakit's SVD sign convention: in each column of U [rows, cols] the entry of largest magnitude
// (the first such, by row) is made positive, and the matching row of Vt [cols, n] flips with it.
// `colsign` writes sign[j] in {-1, 1} (one workgroup per column); `flip` scales a matrix by it,
// per column (mode 0, U) or per row (mode 1, Vt).
// Bindings and uniform block: generated from the descriptor in gpu/linalg/sign.ts.

var<workgroup> best_abs: array<f32, WG>;
var<workgroup> best_row: array<u32, WG>;

@compute @workgroup_size(WG)
fn colsign(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let j = wid.x;
  var a = -1.0;
  var r = 0xffffffffu;
  for (var i = lid; i < p.rows; i += WG) {
    let v = abs(src[i * p.cols + j]);
    if (v > a) {
      a = v;
      r = i;
    }
  }
  best_abs[lid] = a;
  best_row[lid] = r;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s = s / 2u) {
    if (lid < s) {
      let oa = best_abs[lid + s];
      let orow = best_row[lid + s];
      if (oa > best_abs[lid] || (oa == best_abs[lid] && orow < best_row[lid])) {
        best_abs[lid] = oa;
        best_row[lid] = orow;
      }
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let row = best_row[0];
    var sg = 1.0;
    if (row < p.rows && src[row * p.cols + j] < 0.0) {
      sg = -1.0;
    }
    sgn[j] = sg;
  }
}
