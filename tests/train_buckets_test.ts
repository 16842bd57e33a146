import assert from "node:assert/strict";
import {
  BucketManager,
  bucketSummary,
  cropLtrb,
  epochBatches,
  makeBucketResolutions,
  seededRandom,
  type Size,
} from "../core/train/buckets.ts";
import { fixture } from "./fixtures.ts";

interface Pick {
  image: Size;
  bucket: Size;
  resized: Size;
  ar_error: number;
  crop_ltrb: [number, number, number, number];
}
interface Case {
  max_reso: Size;
  min_size: number;
  max_size: number;
  divisible: number;
  buckets: Size[];
  select: { default: Pick[]; no_upscale: Pick[] };
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9;

Deno.test("bucket lists and selections equal kohya's (buckets.json)", async () => {
  const path = fixture("kohya/buckets.json");
  if (path === null) return;
  const cases: Case[] = JSON.parse(await Deno.readTextFile(path));
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const label = `${c.max_reso.join("x")} ${c.min_size}..${c.max_size}/${c.divisible}`;
    assert.deepEqual(
      makeBucketResolutions(c.max_reso, c.min_size, c.max_size, c.divisible),
      c.buckets,
      label,
    );
    for (const mode of ["default", "no_upscale"] as const) {
      const m = new BucketManager({
        noUpscale: mode === "no_upscale",
        maxReso: c.max_reso,
        minSize: c.min_size,
        maxSize: c.max_size,
        resoSteps: c.divisible,
      });
      for (const p of c.select[mode]) {
        const got = m.selectBucket(p.image[0], p.image[1]);
        const what = `${label} ${mode} ${p.image.join("x")}`;
        assert.deepEqual(got.bucket, p.bucket, what);
        assert.deepEqual(got.resized, p.resized, what);
        assert.ok(close(got.arError, p.ar_error), `${what}: ar ${got.arError} vs ${p.ar_error}`);
        const crop = cropLtrb(got.bucket, p.image);
        crop.forEach((v, i) => assert.ok(close(v, p.crop_ltrb[i]), `${what}: crop ${crop}`));
      }
    }
  }
});

Deno.test("summary lists non-empty buckets after sorting; batches stay within a bucket", () => {
  const m = new BucketManager({
    noUpscale: false,
    maxReso: [512, 512],
    minSize: 256,
    maxSize: 1024,
    resoSteps: 64,
  });
  const images: [string, number, number, number][] = [
    ["wide", 1024, 640, 3],
    ["square", 512, 512, 2],
    ["tall", 640, 1024, 1],
  ];
  for (const [key, w, h, repeats] of images) {
    const { bucket } = m.selectBucket(w, h);
    for (let r = 0; r < repeats; r++) m.addImage(bucket, key);
  }
  m.sort();
  assert.deepEqual(m.resos, [[384, 640], [512, 512], [640, 384]]);
  assert.equal(
    bucketSummary(m).split("\n").slice(1).join("\n"),
    "bucket 0: resolution (384, 640), count: 1\n" +
      "bucket 1: resolution (512, 512), count: 2\n" +
      "bucket 2: resolution (640, 384), count: 3",
  );
  const batches = epochBatches(m, 2, 42, 1);
  assert.equal(batches.length, 1 + 1 + 2);
  for (const b of batches) {
    assert.ok(b.keys.length >= 1 && b.keys.length <= 2);
    assert.ok(b.keys.every((k) => k === b.keys[0]), "a batch never mixes buckets here");
  }
  // Same seed and epoch: same order; another epoch: reshuffled deterministically.
  const again = epochBatches(m, 2, 42, 1).map((b) => `${b.bucketIndex}/${b.batchIndex}`);
  assert.deepEqual(again, batches.map((b) => `${b.bucketIndex}/${b.batchIndex}`));
});

Deno.test("seededRandom is deterministic and uniform-ish", () => {
  const a = seededRandom(7), b = seededRandom(7);
  const xs = Array.from({ length: 1000 }, () => a());
  assert.deepEqual(xs.slice(0, 5), Array.from({ length: 5 }, () => b()));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05);
});

Deno.test("bad bucket settings are clear errors", () => {
  assert.throws(
    () =>
      new BucketManager({
        noUpscale: false,
        maxReso: [1024, 1024],
        minSize: 256,
        maxSize: 768,
        resoSteps: 64,
      }),
    /max_bucket_reso \(768\)/,
  );
});
