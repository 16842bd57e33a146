/**
 * bitsandbytes' dynamic 8-bit quantization maps (`create_dynamic_map`), built on the host in
 * float32 arithmetic so that every entry equals the table bitsandbytes computes with PyTorch on
 * the CPU, and the search that maps a normalised value to its code (`quantize_2D` in
 * bitsandbytes' kernels), used by the CPU references of the 8-bit optimizer.
 *
 * @module
 */

const f = Math.fround;

/**
 * `torch.linspace(0.1, 1, steps)` in float32, as PyTorch's x86 CPU kernel evaluates it: a step
 * rounded to f32, values from the start below the halfway index and from the end above it
 * (fused multiply-add), and lanes of 8 filled as `base + k * step` in pairs of vectors. Entries
 * of the maps depend on these last-bit details, so they are reproduced rather than idealised.
 */
function torchLinspace(steps: number): number[] {
  const start = f(0.1), end = 1, lanes = 8;
  const step = f(f(end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (i: number) => i < half ? f(start + step * i) : f(end - step * (steps - i - 1));
  const out: number[] = [];
  let i = 0;
  for (; i <= steps - 2 * lanes; i += 2 * lanes) {
    for (let h = 0; h < 2; h++) {
      const base = at(i + h * lanes);
      for (let k = 0; k < lanes; k++) out.push(f(base + f(k * step)));
    }
  }
  for (; i < steps; i++) out.push(at(i));
  return out;
}

/**
 * The 256-entry dynamic map, sorted ascending: for exponents 10^-6 .. 10^0, the midpoints of an
 * even split of [0.1, 1] (2^i of them signed, mirrored; 2^(i+1) unsigned), plus 0 and 1.
 * Signed: m (first moment); unsigned: v (second moment).
 */
export function createDynamicMap(signed: boolean): Float32Array {
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = torchLinspace(signed ? 2 ** i + 1 : 2 ** (i + 1) + 1);
    const scale = f(10 ** (i - 6));
    for (let k = 0; k + 1 < b.length; k++) {
      const mean = f(f(b[k] + b[k + 1]) / 2);
      data.push(f(scale * mean));
      if (signed) data.push(f(-scale * mean));
    }
  }
  data.push(0, 1);
  return Float32Array.from(data.sort((a, b) => a - b));
}

/**
 * The code of `x` (already divided by the block's absmax) in a sorted map: bitsandbytes' binary
 * search from pivot 127 with steps 64..1, then the nearer of the two bracketing entries (ties
 * to the pivot). The kernel in shaders/optim_adamw8bit.wgsl is the same search.
 */
export function quantizeCode(map: Float32Array, x: number, signed: boolean): number {
  let pivot = 127, upperPivot = 255, lowerPivot = 0;
  let lower = signed ? -1 : 0, upper = 1;
  let val = map[127];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = map[pivot];
  }
  if (x > val) return x > f((upper + val) * 0.5) ? upperPivot : pivot;
  return x < f((lower + val) * 0.5) ? lowerPivot : pivot;
}
