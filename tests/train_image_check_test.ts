/**
 * The dataset scan decodes every image once before training: on workers or in-process, the same
 * files are found bad, each with a one-line reason naming it.
 */
import assert from "node:assert/strict";
import { imageChecker, skippedSummary } from "../core/train/image_check.ts";
import { writePng } from "./train_fixture_data.ts";

async function folderWithBadImages(): Promise<{ dir: string; paths: string[]; bad: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-check-" });
  const paths: string[] = [];
  for (let i = 0; i < 10; i++) {
    const p = `${dir}/img${i}.png`;
    await writePng(p, 24, 16, i);
    paths.push(p);
  }
  // Truncated after the header (the header-only scan reads its size fine).
  const t = await Deno.readFile(paths[3]);
  await Deno.writeFile(paths[3], t.subarray(0, 40));
  // Garbage pixel data behind a valid header.
  const g = await Deno.readFile(paths[7]);
  g.fill(0x5a, 45, g.length - 12);
  await Deno.writeFile(paths[7], g);
  // Not an image at all.
  await Deno.writeTextFile(paths[9], "hello");
  return { dir, paths, bad: [paths[3], paths[7], paths[9]] };
}

Deno.test("image check: workers and in-process find the same bad images", async () => {
  const { dir, paths, bad } = await folderWithBadImages();
  try {
    for (const workers of [0, 2]) {
      const checker = imageChecker(workers);
      try {
        const found = await checker.check(paths);
        assert.deepEqual([...found.keys()].sort(), bad, `workers ${workers}`);
        for (const [path, reason] of found) {
          assert.ok(reason.startsWith(path), reason);
          assert.ok(!reason.includes("\n"), reason);
        }
        // A second call reuses the pool.
        assert.equal((await checker.check(paths.slice(0, 3))).size, 0);
      } finally {
        checker.close();
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("image check: the summary counts and lists what was left out", () => {
  const skipped = Array.from({ length: 23 }, (_, i) => ({
    path: `/d/${i}.png`,
    reason: i % 2 ? `/d/${i}.png: corrupt or truncated PNG` : "no image found for key",
  }));
  const text = skippedSummary(skipped, 100);
  const lines = text.split("\n");
  assert.equal(
    lines[0],
    "left out 23 of 100 images that cannot be used (not counted, not in any bucket):",
  );
  assert.equal(lines[1], "  /d/0.png: no image found for key");
  assert.equal(lines[2], "  /d/1.png: corrupt or truncated PNG");
  assert.equal(lines.length, 22);
  assert.equal(lines[21], "  ... and 3 more");
});
