/**
 * WEBP decoding against OpenCV's and Pillow's decode of the same files (tests/data/webp, made as
 * its README says): lossy, lossless, both with alpha, and an animation's first frame; header
 * sizes agree with the decode; corrupt, truncated and oversized files are LorakitErrors naming
 * the file; resize_images_to_resolution and the dataset scan take WEBP files.
 */
import assert from "node:assert/strict";
import { main as resizeImages } from "../cli/resize_images.ts";
import { LorakitError } from "../core/errors.ts";
import { decodeImage, readImage } from "../core/image/decode.ts";
import { toRGB } from "../core/image/image.ts";
import { imageChecker } from "../core/train/image_check.ts";
import { readImageSize } from "../core/train/image_size.ts";

const DATA = new URL("./data/webp/", import.meta.url).pathname;
const STILLS = ["lossy", "lossless", "lossy_alpha", "lossless_alpha"];
const ALL = [...STILLS, "animated"];

async function rejects(p: Promise<unknown>, name: string, says = ""): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof LorakitError, `not a LorakitError: ${e}`);
    assert.ok(e.message.startsWith(`${name}: `), e.message);
    assert.ok(e.message.includes(says), `"${e.message}" lacks "${says}"`);
    assert.ok(!e.message.includes("\n"), e.message);
    return true;
  });
}

function maxAbsDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

Deno.test("WEBP stills decode to exactly OpenCV's pixels: lossy, lossless, with alpha", async () => {
  for (const name of STILLS) {
    const img = await readImage(`${DATA}${name}.webp`);
    const ref = await readImage(`${DATA}${name}.expected.png`);
    const alpha = name.endsWith("_alpha");
    assert.equal(img.format, "webp");
    assert.equal(img.hasAlpha, alpha, name);
    assert.deepEqual([img.width, img.height, img.channels], [41, 27, alpha ? 4 : 3], name);
    assert.deepEqual([ref.width, ref.height, ref.channels], [img.width, img.height, img.channels]);
    assert.equal(maxAbsDiff(img.data, ref.data), 0, `${name}: pixels differ from OpenCV's`);
  }
});

Deno.test("an animated WEBP gives its first frame on a transparent canvas, as Pillow does", async () => {
  const img = await readImage(`${DATA}animated.webp`);
  const ref = await readImage(`${DATA}animated.expected.png`);
  assert.deepEqual([img.width, img.height, img.channels, img.hasAlpha], [41, 27, 4, true]);
  assert.equal(maxAbsDiff(img.data, ref.data), 0, "first frame differs from Pillow's");
  // The frame (20x14 at 6,4) leaves the rest of the canvas transparent black.
  assert.deepEqual([...img.data.subarray(0, 4)], [0, 0, 0, 0]);
});

Deno.test("readImageSize and readImage agree on WEBP files", async () => {
  for (const name of ALL) {
    const path = `${DATA}${name}.webp`;
    const size = await readImageSize(path);
    const img = await readImage(path);
    assert.deepEqual([size.width, size.height, size.format], [img.width, img.height, "webp"]);
  }
});

/** `bytes` with a 32-bit little-endian value written at `at`. */
function withU32(bytes: Uint8Array, at: number, value: number): Uint8Array {
  const out = bytes.slice();
  new DataView(out.buffer).setUint32(at, value, true);
  return out;
}

Deno.test("corrupt, truncated and oversized WEBPs are LorakitErrors naming the file", async () => {
  const lossy = await Deno.readFile(`${DATA}lossy.webp`);
  const lossless = await Deno.readFile(`${DATA}lossless.webp`);
  const anim = await Deno.readFile(`${DATA}animated.webp`);
  const ascii = (s: string) => new TextEncoder().encode(s);

  await rejects(decodeImage(lossy.subarray(0, 16), "head.webp"), "head.webp", "only 16 bytes");
  await rejects(decodeImage(lossy.subarray(0, 300), "cut.webp"), "cut.webp", "300 of the");
  // The RIFF size shortened to match a cut file: libwebp itself finds the data missing.
  const cut = withU32(lossless.subarray(0, 1000), 4, 992);
  await rejects(decodeImage(cut, "cut2.webp"), "cut2.webp", "corrupt or truncated WEBP");
  await rejects(decodeImage(withU32(lossy, 16, 1 << 30), "size.webp"), "size.webp", "runs past");
  const vp8 = lossy.slice();
  vp8[23] = 0; // the VP8 start code
  await rejects(decodeImage(vp8, "code.webp"), "code.webp", "VP8 frame header missing");
  const other = lossy.slice();
  other.set(ascii("JUNK"), 12);
  await rejects(decodeImage(other, "junk.webp"), "junk.webp", 'first chunk "JUNK"');
  // Garbage in the lossless bitstream: libwebp's own error.
  const garbled = lossless.slice();
  garbled.fill(0xa5, 40, 400);
  await rejects(decodeImage(garbled, "bits.webp"), "bits.webp", "libwebp could not decode");
  // The animation's only ANMF chunks renamed: frames are gone.
  const noFrames = anim.slice();
  for (let p = 12; p + 8 <= noFrames.length;) {
    const size = new DataView(noFrames.buffer).getUint32(p + 4, true);
    if (new TextDecoder().decode(noFrames.subarray(p, p + 4)) === "ANMF") {
      noFrames.set(ascii("XXXX"), p);
    }
    p += 8 + size + (size & 1);
  }
  await rejects(decodeImage(noFrames, "noframes.webp"), "noframes.webp", "without frames");
  // Too many pixels: refused from the header, before libwebp allocates.
  await rejects(decodeImage(lossy, "big.webp", { maxPixels: 1000 }), "big.webp", "allowed");
  await rejects(decodeImage(anim, "big2.webp", { maxPixels: 1000 }), "big2.webp", "allowed");
});

Deno.test("randomly damaged WEBPs decode or fail as LorakitErrors, never otherwise", async () => {
  let seed = 12345;
  const rand = (n: number) => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  let failed = 0, decoded = 0;
  for (const name of ALL) {
    const good = await Deno.readFile(`${DATA}${name}.webp`);
    for (let round = 0; round < 40; round++) {
      const bad = good.slice(0, round % 4 === 3 ? 12 + rand(good.length - 12) : good.length);
      for (let k = 1 + rand(4); k > 0; k--) bad[12 + rand(bad.length - 12)] = rand(256);
      try {
        const img = await decodeImage(bad, `${name}-${round}.webp`);
        assert.equal(img.data.length, img.width * img.height * img.channels);
        decoded++;
      } catch (e) {
        if (!(e instanceof LorakitError)) throw e;
        assert.ok(e.message.startsWith(`${name}-${round}.webp: `), e.message);
        failed++;
      }
    }
  }
  assert.ok(failed > 0 && decoded > 0, `failed ${failed}, decoded ${decoded}`);
});

Deno.test("resize_images_to_resolution reads WEBP sources like PNGs of the same pixels", async () => {
  const src = await Deno.makeTempDir({ prefix: "lorakit_webp_src_" });
  const dst = `${src}_out`;
  try {
    for (const name of ["lossy", "lossless_alpha"]) {
      await Deno.copyFile(`${DATA}${name}.webp`, `${src}/${name}.webp`);
      await Deno.copyFile(`${DATA}${name}.expected.png`, `${src}/${name}_png.png`);
    }
    const args = [src, dst, "--max_resolution", "64x64,24x24", "--save_as_png", "--device", "cpu"];
    assert.equal(await resizeImages(args), 0);
    for (const name of ["lossy", "lossless_alpha"]) {
      for (const res of ["64x64", "24x24"]) {
        const fromWebp = await readImage(`${dst}/${name}+${res}.png`);
        const fromPng = await readImage(`${dst}/${name}_png+${res}.png`);
        assert.equal(fromWebp.channels, 3, "alpha is dropped, as Pillow's convert('RGB') does");
        assert.deepEqual(fromWebp, fromPng, `${name}+${res}`);
      }
      // 41x27 fits in 64x64: no resize, the pixels are the decoded RGB.
      const same = await readImage(`${dst}/${name}+64x64.png`);
      const ref = toRGB(await readImage(`${DATA}${name}.expected.png`));
      assert.deepEqual(same.data, ref.data);
    }
    // Without --save_as_png, kohya writes JPEG whatever the source format.
    await Deno.remove(dst, { recursive: true });
    assert.equal(await resizeImages([src, dst, "--max_resolution", "24x24", "--device", "cpu"]), 0);
    const names = [];
    for await (const e of Deno.readDir(dst)) names.push(e.name);
    assert.deepEqual(names.sort(), [
      "lossless_alpha+24x24.jpg",
      "lossless_alpha_png+24x24.jpg",
      "lossy+24x24.jpg",
      "lossy_png+24x24.jpg",
    ]);
  } finally {
    await Deno.remove(src, { recursive: true });
    await Deno.remove(dst, { recursive: true }).catch(() => {});
  }
});

Deno.test("the dataset scan's image check passes WEBPs and reports a corrupt one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit_webp_check_" });
  try {
    const paths: string[] = [];
    // Enough files (8 or more) for the check to run on decode workers too.
    for (let i = 0; i < 10; i++) {
      const name = ALL[i % ALL.length];
      const p = `${dir}/${i}_${name}.webp`;
      await Deno.copyFile(`${DATA}${name}.webp`, p);
      paths.push(p);
    }
    const bad = paths[1];
    const bytes = await Deno.readFile(bad);
    await Deno.writeFile(bad, bytes.subarray(0, bytes.length >> 1));
    for (const workers of [0, 2]) {
      const checker = imageChecker(workers);
      try {
        const found = await checker.check(paths);
        assert.deepEqual([...found.keys()], [bad], `workers ${workers}`);
        assert.ok(found.get(bad)!.startsWith(`${bad}: corrupt or truncated WEBP`));
      } finally {
        checker.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
