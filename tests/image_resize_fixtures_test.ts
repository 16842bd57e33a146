/**
 * Golden test of `resize_images_to_resolution` against kohya sd-scripts' own outputs
 * (fixtures/resize_images): for every run in manifest.json, the set of files, their names and
 * sizes match exactly, copied files are byte-identical, and PNG pixels are within the README's
 * tolerance. Every output is in fact bit-identical to kohya's: the resize tables reproduce
 * OpenCV's rounding, and JPEG inputs (odd.jpg, wide.jpg) decode to exactly libjpeg-turbo's pixels.
 */
import assert from "node:assert/strict";
import { main } from "../cli/resize_images.ts";
import { readImage } from "../core/image/decode.ts";
import { toRGB } from "../core/image/image.ts";
import { fixture } from "./fixtures.ts";

interface ManifestFile {
  name: string;
  width?: number;
  height?: number;
  copied_from?: string;
  rgb_sha256?: string;
}

const TOL: Record<string, { max: number; mean: number }> = {
  area: { max: 2, mean: 0.1 },
  cubic: { max: 3, mean: 0.25 },
  lanczos4: { max: 3, mean: 0.25 },
};

async function sha256Hex(data: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
  return Array.from(d, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** Run every manifest entry with `--device <device>` and compare with kohya's outputs. */
async function checkRuns(root: string, device: string): Promise<void> {
  const manifest = JSON.parse(await Deno.readTextFile(`${root}/manifest.json`));
  const tmp = await Deno.makeTempDir({ prefix: "lorakit_resize_" });
  let exact = 0, images = 0;
  try {
    for (const run of manifest.runs as { name: string; command: string; files: ManifestFile[] }[]) {
      const out = `${tmp}/${run.name}`;
      const args: string[] = run.command.split(/\s+/).slice(1).map((a: string): string =>
        a === "input" ? `${root}/input` : a === `out/${run.name}` ? out : a
      );
      args.push("--device", device);
      const interp = args.includes("--interpolation")
        ? args[args.indexOf("--interpolation") + 1]
        : "area";
      assert.equal(await main(args), 0, run.command);
      const ours = [];
      for await (const e of Deno.readDir(out)) ours.push(e.name);
      assert.deepEqual(ours.sort(), run.files.map((f) => f.name).sort(), `${run.name}: file set`);
      for (const f of run.files) {
        const path = `${out}/${f.name}`;
        if (f.copied_from) {
          const src = await Deno.readFile(`${root}/input/${f.copied_from}`);
          assert.deepEqual(await Deno.readFile(path), src, `${run.name}/${f.name}`);
          continue;
        }
        const img = toRGB(await readImage(path));
        assert.deepEqual([img.width, img.height], [f.width, f.height], `${run.name}/${f.name}`);
        if (!f.name.endsWith(".png")) continue; // kohya's JPEG outputs are listed, not kept
        images++;
        if ((await sha256Hex(img.data)) === f.rgb_sha256) exact++;
        const ref = toRGB(await readImage(`${root}/out/${run.name}/${f.name}`));
        let max = 0, sum = 0;
        for (let i = 0; i < ref.data.length; i++) {
          const d = Math.abs(ref.data[i] - img.data[i]);
          if (d > max) max = d;
          sum += d;
        }
        const mean = sum / ref.data.length;
        const tol = TOL[interp];
        assert.ok(
          max <= tol.max && mean <= tol.mean,
          `${device} ${run.name}/${f.name}: max ${max} mean ${
            mean.toFixed(4)
          } (allowed ${tol.max}/${tol.mean})`,
        );
      }
    }
    console.log(`--device ${device}: ${exact} of ${images} PNG outputs bit-identical to kohya's`);
    assert.equal(exact, images, "every PNG output is bit-identical");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

// `auto` filters on the GPU (the software adapter in CI), `cpu` on the CPU reference.
for (const device of ["auto", "cpu"]) {
  Deno.test(`resize_images_to_resolution --device ${device} matches kohya's outputs`, async () => {
    const root = fixture("resize_images");
    if (root !== null) await checkRuns(root, device);
  });
}

Deno.test("bad flags and bad folders give exit codes, not exceptions", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "lorakit_resize_" });
  try {
    assert.equal(await main([`${tmp}/missing`, `${tmp}/out`]), 2);
    assert.equal(await main([tmp, `${tmp}/out`, "--max_resolution", "512by512"]), 2);
    assert.equal(await main([tmp, `${tmp}/out`, "--interpolation", "nearest"]), 2);
    // An unreadable image is skipped and reported; the other files are still processed.
    await Deno.writeTextFile(`${tmp}/broken.png`, "not a png");
    await Deno.writeTextFile(`${tmp}/broken.txt`, "caption");
    assert.equal(await main([tmp, `${tmp}/out`, "--copy_associated_files"]), 1);
    const names = [];
    for await (const e of Deno.readDir(`${tmp}/out`)) names.push(e.name);
    assert.deepEqual(names, ["broken.txt"]);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
