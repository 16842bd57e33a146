import assert from "node:assert/strict";
import { colorAug } from "../core/train/color_aug.ts";
import { makeImage } from "../core/image/image.ts";
import { seededRandom } from "../core/train/buckets.ts";

function testImage() {
  const img = makeImage(16, 8, 3);
  for (let i = 0; i < img.data.length; i++) img.data[i] = (i * 37) % 256;
  return img;
}

Deno.test("color_aug: about a third of draws change the image, the same stream the same way", () => {
  const img = testImage();
  let changed = 0;
  for (let s = 0; s < 300; s++) {
    const a = colorAug(img, seededRandom(s));
    const b = colorAug(img, seededRandom(s));
    assert.deepEqual(a.data, b.data);
    if (a !== img) changed++;
  }
  assert.ok(changed > 70 && changed < 130, `${changed} of 300 changed`);
});

Deno.test("color_aug: hue shifts keep grey pixels and each pixel's max (V); gamma as kohya applies it", () => {
  const img = testImage();
  for (let i = 0; i < 24; i += 3) img.data[i] = img.data[i + 1] = img.data[i + 2] = 90; // grey
  let hue = 0, gamma = 0;
  for (let s = 0; s < 200 && (hue === 0 || gamma === 0); s++) {
    const out = colorAug(img, seededRandom(s));
    if (out === img) continue;
    const vKept = [...Array(img.data.length / 3).keys()].every((p) => {
      const m = (d: Uint8Array) => Math.max(d[3 * p], d[3 * p + 1], d[3 * p + 2]);
      return Math.abs(m(out.data) - m(img.data)) <= 1;
    });
    for (let i = 0; i < 24; i += 3) {
      assert.ok(
        out.data[i] === out.data[i + 1] && out.data[i] === out.data[i + 2],
        "grey stays grey",
      );
    }
    if (vKept) hue++;
    else gamma++;
    if (!vKept) {
      // kohya applies the gamma to 0..255 values: v -> min(255, v ** gamma), gamma in [0.95, 1.05].
      for (let i = 0; i < img.data.length; i++) {
        const v = img.data[i];
        const lo = Math.round(v ** 0.95), hi = Math.min(255, Math.round(v ** 1.05));
        assert.ok(out.data[i] >= lo && out.data[i] <= hi, `gamma of ${v} gave ${out.data[i]}`);
      }
    }
  }
  assert.ok(hue > 0 && gamma > 0, `hue ${hue}, gamma ${gamma}`);
});
