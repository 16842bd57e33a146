// bitsandbytes' quantize_2D (<1> over the signed map, <0> over the unsigned one): the code of
// the map entry nearest to x, by binary search from pivot 127 of MAP (256 sorted entries in
// workgroup memory, LOWEST to 1), then the nearer bracketing entry. The launcher writes one copy
// per map, named QUANT: WGSL cannot pass a workgroup array by pointer without
// unrestricted_pointer_parameters, which this runtime does not offer.
fn QUANT(x: f32) -> u32 {
  var pivot = 127u;
  var upperPivot = 255u;
  var lowerPivot = 0u;
  var lower = LOWEST;
  var upper = 1.0;
  var val = MAP[127];
  for (var i = 64u; i > 0u; i = i >> 1u) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = MAP[pivot];
  }
  if (x > val) {
    return select(pivot, upperPivot, x > (upper + val) * 0.5);
  }
  return select(pivot, lowerPivot, x < (lower + val) * 0.5);
}
