/**
 * Tools that read weights by name only (extraction, merging) open a checkpoint whose head counts
 * no source gives (a tiny model without its yaml); loading it to run still says what is missing.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { fixture } from "./fixtures.ts";

Deno.test("headsOptional opens a checkpoint whose head widths nothing states", async () => {
  const model = fixture("sd1-tiny/model.safetensors");
  if (model === null) return;
  const dir = await Deno.makeTempDir({ prefix: "lorakit-heads-" });
  try {
    const bare = `${dir}/bare.safetensors`; // no bare.yaml beside it
    await Deno.copyFile(model, bare);
    await assert.rejects(
      loadCheckpoint(bare),
      (e: Error) => e instanceof LorakitError && /do not split into heads/.test(e.message),
    );
    const ck = await loadCheckpoint(bare, { headsOptional: true });
    assert.ok(ck.names().length > 0);
    assert.equal(ck.config.textEncoder.numHeads, 1);
    ck.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
