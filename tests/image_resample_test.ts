/**
 * Resampling: OpenCV 4.6 `cv2.resize` outputs (embedded below, made from a deterministic input)
 * reproduced bit-exactly for every path (area fractional, area 2x2 box, area integer box, area
 * enlarging, cubic, Lanczos-4, 1/3/4 channels); table invariants; bucketing helpers.
 */
import assert from "node:assert/strict";
import { makeImage, type RasterImage } from "../core/image/image.ts";
import { resize } from "../core/image/resample.ts";
import { type Interpolation, planResize } from "../core/image/resample_tables.ts";
import { centerCrop, coverSize, randomCrop, resizeToCover } from "../core/image/bucket.ts";

function pattern(w: number, h: number, c: 1 | 3 | 4): RasterImage {
  const n = w * h * c;
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (i * 37 + Math.floor(i / 7) * 11 + 5) % 256;
  return makeImage(w, h, c, data);
}

// [filter, inW, inH, channels, outW, outH, base64 of cv2.resize output]
const OPENCV: [Interpolation, number, number, 1 | 3 | 4, number, number, string][] = [
  [
    "area",
    13,
    9,
    3,
    5,
    4,
    "hWVlhZyGXHiff3mTk2KAf46VZGyMjnlsd5WSYnV5hJZxcH92hIuebmN+mI1zWmaAkXt3gJppcpCFiYOl",
  ],
  [
    "area",
    12,
    8,
    3,
    6,
    4,
    "cld8mIBlf6aOaI20TnabtFyEiHBYcZZ+Wn+kQGiNp052kLVcZImwSnKXsFiAmX5mgqdMaJC1fGSJo0pyjLFYcpp/WICogWaO",
  ],
  ["area", 9, 6, 3, 3, 2, "aFd+jHmDkZuIZYt4apC3jF9o"],
  [
    "cubic",
    13,
    9,
    3,
    6,
    5,
    "Wl+YZ2mAPWKBEUhtYzFmwiZfVYhLKVJ9LSJL+jcst/BOgMBA00Vyyxg9w+kSqc3zfqPHuXabmssnlbzIfrHbcpW7c6GLZJG4U4e5YXGlVG+fOV6JJlWLk0lz",
  ],
  [
    "lanczos4",
    13,
    9,
    4,
    5,
    7,
    "k7bLJq7zd2aZwOUnueKYlJnH7j+ErbLVTbP6pGmIrvMqoce3WHOo/AFknaxpK5PGC1l4moILcJ4pWEuG3RM9hHF3H3L4HUJnmKgNWv83UEyi6kcb/41vLrL/SiTxnasouf9fMZ2U1YOm/8FhkKbxj5Dlv511svagVZK0vTOFueRLepvNHGu92FRYoNI=",
  ],
  [
    "area",
    7,
    5,
    3,
    15,
    11,
    "BSpPBSpPZImudJm+wzle4xM4llJ3XYKnjbJuzPEhpstBRmuQVnugtdr/tdr/BSpPBSpPZImudJm+wzle4xM4llJ3XYKnjbJuzPEhpstBRmuQVnugtdr/tdr/J0txJ0txhqvQlbrgU1uAODVZYHSZfqTIrnuP7kZCx1piaIyyd3+k1i9U1i9UL1R5L1R5jrPYnsPoNmOIDT1iU3yhh6zRt26Y9htL0D5rcJW6gICl3wQp3wQpSG2SSG2Sp8xtt9xoUHx1JlZ7bJa7oMXqjoexdTRke1eEia7Tg5m+Xh1CXh1CWX6jWX6juN0nyO0SYI1pN2eMfabLsdb7c5jCIEV1Q2iVmr/kharPCS5TCS5Tao+0ao+0yZY32ZcjcYF6SHidjX2iwoClg26YMVaGVHmIq9COlruIGj9kGj9kg6jNg6jN4ixR8hc8im6TYZG2pz5j2wAlnTBZSm+fbZJ2xOkOr9QeM1h9M1h9i7DVi7DVvzRZxx9EhHabaZm+kkZssAgtiDhiUnendYt+zL4Wt7EmO2CFO2CFrdL3rdL3MVZ7HEFma5i9i7vgPmiNBSpPNVqDdJnJl3Og7hM42SNIXYKnXYKnrdL3rdL3MVZ7HEFma5i9i7vgPmiNBSpPNVqDdJnJl3Og7hM42SNIXYKnXYKn",
  ],
  [
    "cubic",
    6,
    5,
    1,
    14,
    9,
    "AAAPLD9LXmp9i5uvvMRSRSgWIz9XYnWDk6a0vOa3VgYFMEpVaHWGmaev/+SydDweHTtbaXeLmKHI0/fxmzgSL01aa36MlLnI6vnhsnlNN0RfcoCIrbXB1v//1GQdK1BkcXmgqLTJ9P/DUAkaQ1dkbJigrcHm865AABE7T1xk",
  ],
  [
    "lanczos4",
    30,
    20,
    3,
    11,
    7,
    "CylPfjN+WoqDnMLpHzVahyJnTHfJmb/f+jZkqAlOLmOvoM8BNmR6rkRfW7GOj7frPW2SrBJVWaKNiq3s+HOYxAY3g76Bga8jXYqVv0hrfaGNeqbtZIqewDVheoWAb5r3epGmFGiZlat2iNI7cYibA16OioZ6gbBGcYafC1eDfWZ1d6JVWHIcGnyZmXiTs/lRXoQJFmeIgkWKoe5VX4W0GGCMek6N1TA8dJsSRWeGT42/vv9FeaMNNVl0OIezqONogqy1IkhlXbnfwFZrsskwKU1wQZnBo1dzs80OJktiKYawkdx6vuYJ",
  ],
];

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

Deno.test("resize reproduces cv2.resize bit-exactly on every path", () => {
  for (const [filter, w, h, c, ow, oh, b64] of OPENCV) {
    const out = resize(pattern(w, h, c), ow, oh, filter);
    assert.equal(out.width, ow);
    assert.equal(out.height, oh);
    assert.deepEqual(out.data, fromBase64(b64), `${filter} ${w}x${h}x${c} -> ${ow}x${oh}`);
  }
});

Deno.test("plans pick OpenCV's path and the fixed-point weights it stores", () => {
  assert.equal(planResize(12, 8, 6, 4, "area").kind, "box");
  assert.equal(planResize(13, 9, 5, 4, "area").kind, "float");
  assert.equal(planResize(7, 5, 15, 11, "area").kind, "linear");
  assert.equal(planResize(7, 5, 6, 11, "area").kind, "linear"); // one axis enlarging
  const l = planResize(700, 500, 605, 432, "lanczos4");
  assert.equal(l.x.taps, 8);
  for (let d = 0; d < l.x.outSize; d++) {
    const s = l.x.weights.subarray(d * 8, d * 8 + 8).reduce((a, b) => a + b, 0);
    // Each tap is rounded on its own, so a row may sum to 2048 +- a few units, never more.
    assert.ok(Math.abs(s - 2048) <= 4, `row ${d} sums to ${s}`);
  }
  const a = planResize(700, 500, 605, 432, "area");
  for (let d = 0; d < a.y.outSize; d++) {
    const s = a.y.weights.subarray(d * a.y.taps, (d + 1) * a.y.taps).reduce((x, y) => x + y, 0);
    assert.ok(Math.abs(s - 1) < 1e-5);
  }
});

Deno.test("same size is a copy-free identity; constant images stay constant", () => {
  const img = pattern(9, 7, 3);
  assert.equal(resize(img, 9, 7, "cubic"), img);
  const flat = makeImage(31, 17, 3, new Uint8Array(31 * 17 * 3).fill(200));
  for (const f of ["area", "cubic", "lanczos4"] as const) {
    assert.ok(resize(flat, 12, 9, f).data.every((v) => v === 200), f);
  }
});

Deno.test("bucketing: cover size, centre crop, seeded random crop", () => {
  assert.deepEqual(coverSize(1000, 500, 512, 512), [1024, 512]);
  assert.deepEqual(coverSize(500, 1000, 640, 384), [640, 1280]);
  assert.deepEqual(coverSize(333, 777, 256, 256), [256, 597]); // int(777*256/333 + 0.5)
  const img = pattern(40, 30, 3);
  const covered = resizeToCover(img, 16, 16);
  assert.deepEqual([covered.width, covered.height], [21, 16]);
  const c = centerCrop(img, 10, 6);
  assert.deepEqual(
    Array.from(c.data.subarray(0, 3)),
    Array.from(img.data.subarray((12 * 40 + 15) * 3, (12 * 40 + 15) * 3 + 3)),
  );
  let state = 42;
  const rng = () => ((state = (state * 1103515245 + 12345) % 2147483648) / 2147483648);
  const r1 = randomCrop(img, 10, 6, rng);
  state = 42;
  const r2 = randomCrop(img, 10, 6, rng);
  assert.deepEqual([r1.x, r1.y], [r2.x, r2.y]);
  assert.deepEqual(r1.image.data, r2.image.data);
  assert.ok(r1.x >= 0 && r1.x <= 30 && r1.y >= 0 && r1.y <= 24);
  assert.deepEqual(randomCrop(img, 40, 30, () => 0.999999).image, img);
  assert.throws(() => centerCrop(img, 41, 5));
});
