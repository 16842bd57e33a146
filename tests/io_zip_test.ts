import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { crc32, openZip } from "../core/io/zip.ts";
import { memFile, rng, zipBytes, type ZipFileSpec } from "./ckpt_build.ts";

const enc = new TextEncoder();

function sampleFiles(): ZipFileSpec[] {
  const big = new Uint8Array(5000).map((_, i) => (i * 7) & 0xff);
  return [
    { name: "archive/data.pkl", data: enc.encode("pickle bytes ".repeat(20)), deflate: true },
    { name: "archive/data/0", data: big },
    { name: "archive/data/1", data: new Uint8Array(0) },
    { name: "archive/version", data: enc.encode("3\n") },
  ];
}

Deno.test("zip: crc32 matches the IEEE reference value", () => {
  assert.equal(crc32(enc.encode("123456789")), 0xcbf43926);
});

for (const zip64 of [false, true]) {
  Deno.test(`zip: reads entries, ranges and deflated data (zip64=${zip64})`, async () => {
    const files = sampleFiles();
    const bytes = await zipBytes(files, { zip64, comment: "a trailing comment" });
    const z = await openZip(memFile(bytes));
    assert.deepEqual(z.entries.map((e) => e.name), files.map((f) => f.name));
    for (const f of files) {
      const e = z.get(f.name)!;
      assert.equal(e.size, f.data.length);
      assert.deepEqual(await z.readEntry(e), f.data);
      // torch aligns storage data to 64 bytes through the local extra field.
      if (!f.deflate) assert.equal((await z.dataOffset(e)) % 64, 0);
    }
    const e0 = z.get("archive/data/0")!;
    assert.deepEqual(await z.readRange(e0, 1000, 16), files[1].data.subarray(1000, 1016));
    const pkl = z.get("archive/data.pkl")!;
    assert.equal(pkl.method, 8);
    assert.deepEqual(await z.readRange(pkl, 13, 6), enc.encode("pickle"));
    await assert.rejects(() => z.readRange(e0, 4990, 20), LorakitError);
    assert.equal(z.get("missing"), undefined);
  });
}

Deno.test("zip: truncated archives are LorakitErrors", async () => {
  for (const zip64 of [false, true]) {
    const bytes = await zipBytes(sampleFiles(), { zip64 });
    const cuts = new Set<number>([0, 10, 21, 22, bytes.length - 1, bytes.length - 22]);
    for (let n = 0; n < bytes.length; n += 97) cuts.add(n);
    for (let n = bytes.length - 200; n < bytes.length; n++) cuts.add(n);
    for (const n of cuts) {
      await assert.rejects(
        async () => {
          const z = await openZip(memFile(bytes.slice(0, n)));
          for (const e of z.entries) await z.readEntry(e);
        },
        LorakitError,
        `zip64=${zip64} cut at ${n}`,
      );
    }
  }
});

Deno.test("zip: corrupt data and headers are detected", async () => {
  const bytes = await zipBytes(sampleFiles());
  const z = await openZip(memFile(bytes));
  const e0 = z.get("archive/data/0")!;
  const bad = bytes.slice();
  bad[(await z.dataOffset(e0)) + 10] ^= 1;
  const zb = await openZip(memFile(bad));
  await assert.rejects(() => zb.readEntry(zb.get("archive/data/0")!), /CRC-32 mismatch/);

  // Garbage inside a deflate stream.
  const pkl = z.get("archive/data.pkl")!;
  const pklAt = await z.dataOffset(pkl);
  for (let i = 0; i < pkl.compressedSize; i += 3) {
    const d = bytes.slice();
    d[pklAt + i] ^= 0x5a;
    const zd = await openZip(memFile(d));
    // Either an error, or a flip in bits the decoder ignores (the final byte's padding).
    const got = await zd.readEntry(zd.get("archive/data.pkl")!).catch((e) => {
      assert.ok(e instanceof LorakitError, String(e));
      return null;
    });
    if (got !== null) assert.deepEqual(got, sampleFiles()[0].data);
  }

  // An end record that claims far more entries than its directory can hold.
  const many = bytes.slice();
  const eocd = many.length - 22;
  many[eocd + 10] = 0xff;
  many[eocd + 11] = 0xff;
  await assert.rejects(() => openZip(memFile(many)), /cannot fit/);

  // A central directory offset past the end of the file.
  const far = bytes.slice();
  far[eocd + 19] = 0x7f;
  await assert.rejects(() => openZip(memFile(far)), /outside the file/);

  await assert.rejects(
    () => openZip(memFile(enc.encode("not a zip at all, just text"))),
    /not a valid ZIP/,
  );

  // Unsupported compression method.
  const m = bytes.slice();
  const cd = new DataView(m.buffer).getUint32(eocd + 16, true); // first central header
  assert.equal(new DataView(m.buffer).getUint32(cd, true), 0x02014b50);
  m[cd + 10] = 12; // bzip2
  const zm = await openZip(memFile(m));
  await assert.rejects(() => zm.readEntry(zm.entries[0]), /compression method 12/);
});

Deno.test("zip: random corruption never escapes as anything but a LorakitError", async () => {
  const bytes = await zipBytes(sampleFiles(), { zip64: true });
  const rand = rng(99);
  for (let iter = 0; iter < 400; iter++) {
    const bad = bytes.slice();
    for (let k = 0; k < 3; k++) bad[Math.floor(rand() * bad.length)] = Math.floor(rand() * 256);
    try {
      const z = await openZip(memFile(bad));
      for (const e of z.entries) await z.readEntry(e);
    } catch (e) {
      if (!(e instanceof LorakitError)) throw new Error(`iteration ${iter}: ${e}`);
    }
  }
});
