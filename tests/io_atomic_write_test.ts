/** Atomic writes: the next successful write of a file removes what a killed write left beside it. */
import assert from "node:assert/strict";
import { writeFileAtomic } from "../core/io/fs.ts";

Deno.test("writeFileAtomic removes the output's stale temporary files and nothing else", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-atomic-" });
  try {
    const keep = ["out.safetensors.tmp", "other.safetensors.deadbeef.tmp", "out.safetensors.x.tmp"];
    const stale = ["out.safetensors.deadbeef.tmp", "out.safetensors.0123abcd.tmp"];
    for (const n of [...keep, ...stale]) await Deno.writeTextFile(`${dir}/${n}`, "partial");
    await writeFileAtomic(`${dir}/out.safetensors`, "whole");
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, [...keep, "out.safetensors"].sort());
    assert.equal(await Deno.readTextFile(`${dir}/out.safetensors`), "whole");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
