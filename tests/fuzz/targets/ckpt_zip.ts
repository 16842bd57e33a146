/**
 * `.ckpt` in torch's ZIP format: the archive (end record, ZIP64 records, central and local
 * headers, sizes and offsets, STORED and DEFLATE members) and the `data.pkl` inside it, through
 * `openCkptFile` over the bytes in memory and a read of every tensor. Structural edits rebuild a
 * valid archive around a mutated pickle or storage, so the checks past the container are reached.
 *
 * @module
 */
import { openCkptFile } from "../../../core/io/ckpt.ts";
import {
  ckptPickle,
  memFile,
  type StorageSpec,
  type TensorSpec,
  zipBytes,
  type ZipFileSpec,
} from "../../ckpt_build.ts";
import { mutateBytes } from "../mutate_bytes.ts";
import { mutatePickle } from "../pickle_mutate.ts";
import type { Rng } from "../rng.ts";
import type { FuzzTarget, Seed } from "../target.ts";
import { readEverything, SEED_TENSORS, seedStorages, zipLayout } from "./ckpt_seeds.ts";

interface Recipe {
  files: ZipFileSpec[];
  zip64: boolean;
}

/** How each seed was built, so an edit can rebuild a consistent archive. */
const recipes = new WeakMap<Uint8Array, Recipe>();

function seedFiles(
  folder: string,
  tensors: TensorSpec[],
  storages: Record<string, StorageSpec>,
  o: { deflate?: boolean; stateDict?: boolean; byteorder?: string },
): ZipFileSpec[] {
  const files: ZipFileSpec[] = [
    { name: `${folder}/data.pkl`, data: ckptPickle(tensors, storages, o), deflate: o.deflate },
  ];
  if (o.byteorder) {
    files.push({ name: `${folder}/byteorder`, data: new TextEncoder().encode(o.byteorder) });
  }
  for (const [key, s] of Object.entries(storages)) {
    files.push({ name: `${folder}/data/${key}`, data: s.data, deflate: o.deflate });
  }
  files.push({ name: `${folder}/version`, data: new TextEncoder().encode("3\n") });
  return files;
}

/** The archive rebuilt after an edit of its members. */
async function rebuild(seed: Seed, r: Rng, edit: (files: ZipFileSpec[]) => ZipFileSpec[]) {
  const recipe = recipes.get(seed.bytes);
  if (recipe === undefined) return mutateBytes(seed.bytes, r);
  const files = edit(recipe.files.map((f) => ({ ...f })));
  return await zipBytes(files, { zip64: recipe.zip64 });
}

const editPickle = (seed: Seed, r: Rng) =>
  rebuild(seed, r, (files) => {
    const f = files[0];
    f.data = r.chance(0.6) ? mutatePickle(f.data, r) : mutateBytes(f.data, r);
    return files;
  });

const editStorage = (seed: Seed, r: Rng) =>
  rebuild(seed, r, (files) => {
    const storages = files.filter((f) => f.name.includes("/data/"));
    const f = r.pick(storages);
    const k = r.int(4);
    if (k === 0) f.data = f.data.subarray(0, r.int(f.data.length));
    else if (k === 1) {
      const grown = new Uint8Array(f.data.length + 1 + r.int(64));
      grown.set(f.data);
      f.data = grown;
    } else if (k === 2) {
      // Highly compressible: a small member that inflates to much more.
      f.data = new Uint8Array(r.pick([4096, 32768]));
      f.deflate = true;
    } else f.data = mutateBytes(f.data, r);
    return files;
  });

const editMembers = (seed: Seed, r: Rng) =>
  rebuild(seed, r, (files) => {
    const i = r.int(files.length);
    switch (r.int(6)) {
      case 0:
        files.splice(i, 1);
        break;
      case 1:
        files.splice(i, 0, { ...files[i] });
        break;
      case 2:
        files[i].name = r.pick(["archive/data.pkl", "other/data.pkl", "archive/data/9", "x", ""]);
        break;
      case 3:
        files.push({
          name: `${files[0].name.split("/")[0]}/byteorder`,
          data: new TextEncoder().encode(r.pick(["big", "little", "", "\xff\xfe"])),
          deflate: r.chance(0.5),
        });
        break;
      case 4:
        files[i].deflate = !files[i].deflate;
        break;
      default:
        files.reverse();
    }
    return files;
  });

export const target: FuzzTarget = {
  name: "ckpt_zip",
  what: "openCkptFile over a ZIP-format .ckpt in memory, then readF32/readRaw of every tensor",
  boundText:
    "4 x 1032 x input + 1 MiB per buffer (DEFLATE expands at most 1032:1; f32 is 4x a byte)",
  allocBound: (n) => 4 * 1032 * n + (1 << 20),
  async seeds() {
    const storages = seedStorages();
    const variants: [
      string,
      { deflate?: boolean; stateDict?: boolean; byteorder?: string },
      boolean,
    ][] = [
      ["archive", {}, false],
      ["model", { stateDict: true }, false],
      ["archive", { deflate: true }, false],
      ["archive", { byteorder: "little" }, true],
    ];
    const out: Seed[] = [];
    for (const [folder, o, zip64] of variants) {
      const files = seedFiles(folder, SEED_TENSORS, storages, o);
      const bytes = await zipBytes(files, { zip64 });
      recipes.set(bytes, { files, zip64 });
      out.push({ bytes, layout: zipLayout(bytes) });
    }
    return out;
  },
  structural: [editPickle, editPickle, editStorage, editMembers],
  async run(input) {
    await readEverything(await openCkptFile(memFile(input, "fuzz.ckpt")));
  },
};
