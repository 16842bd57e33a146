/**
 * `.ckpt` in torch's legacy format: five pickles back to back (magic number, protocol, sys_info,
 * the state dict, the storage keys) then each storage as a u64 element count and its bytes,
 * through `openCkptFile` over the bytes in memory and a read of every tensor.
 *
 * @module
 */
import { openCkptFile } from "../../../core/io/ckpt.ts";
import { legacyCkpt, memFile } from "../../ckpt_build.ts";
import type { Field } from "../mutate_bytes.ts";
import { mutatePickle, pickleFields, walkPickle } from "../pickle_mutate.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";
import { readEverything, SEED_TENSORS, seedStorages } from "./ckpt_seeds.ts";

export const target: FuzzTarget = {
  name: "ckpt_legacy",
  what: "openCkptFile over a legacy-format .ckpt in memory, then readF32/readRaw of every tensor",
  boundText: "4 x input + 1 MiB per buffer (f32 of a byte storage is 4x its bytes)",
  allocBound: (n) => 4 * n + (1 << 20),
  seeds() {
    const storages = seedStorages();
    return Promise.resolve([false, true].map((stateDict) => {
      const bytes = legacyCkpt(SEED_TENSORS, storages, { stateDict });
      const fields: Field[] = pickleFields(bytes, 0, 5);
      // The storages follow the pickles: a u64 element count, then the elements.
      let at = walkPickle(bytes, 0, 5).end;
      for (const s of Object.values(storages)) {
        fields.push({ at, size: 8, little: true, name: "storage element count" });
        at += 8 + s.data.length;
      }
      return { bytes, layout: { fields, chunks: [] } };
    }));
  },
  structural: [
    (seed: Seed, r: Rng) => mutatePickle(seed.bytes, r, 0, 5),
    (seed: Seed, r: Rng) => mutatePickle(seed.bytes, r, 0, 5),
  ],
  async run(input) {
    await readEverything(await openCkptFile(memFile(input, "fuzz.ckpt")));
  },
};
