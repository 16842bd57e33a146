import assert from "node:assert/strict";
import {
  generateBlueprint,
  parseDatasetConfig,
  userConfigFromArgs,
} from "../core/kohya/dataset_config.ts";
import { scanDataset } from "../core/train/dataset_scan.ts";
import { makeDatasetBuckets } from "../core/train/dataset_buckets.ts";
import { readImageSize } from "../core/train/image_size.ts";

const argDefaults = {
  train_batch_size: 1,
  dataset_repeats: 1,
  caption_extension: ".caption",
  caption_separator: ",",
  keep_tokens: 0,
  keep_tokens_separator: "",
  shuffle_caption: false,
  resolution: null,
  enable_bucket: false,
  min_bucket_reso: 256,
  max_bucket_reso: 1024,
  bucket_reso_steps: 64,
  prior_loss_weight: 1.0,
};

function png(w: number, h: number): Uint8Array {
  const b = new Uint8Array(33);
  b.set([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52]);
  new DataView(b.buffer).setUint32(16, w);
  new DataView(b.buffer).setUint32(20, h);
  return b;
}

const TOML = `
[general]
shuffle_caption = true
caption_extension = ".txt"
keep_tokens = 1

[[datasets]]
resolution = [512, 768]
batch_size = 4
enable_bucket = true

  [[datasets.subsets]]
  image_dir = "a"
  num_repeats = 10
  class_tokens = "sks dog"

  [[datasets.subsets]]
  image_dir = "b"
  is_reg = true
  keep_tokens = 0
`;

Deno.test("TOML config: schema, fallbacks subset -> dataset -> general -> args", () => {
  const user = parseDatasetConfig(TOML, "cfg.toml");
  const bp = generateBlueprint(user, { ...argDefaults, train_batch_size: 2, flip_aug: true });
  const [d] = bp.datasets;
  assert.equal(d.isDreambooth, true);
  assert.deepEqual(d.params.resolution, [512, 768]);
  assert.equal(d.params.batch_size, 4);
  assert.equal(d.params.enable_bucket, true);
  assert.equal(d.subsets[0].num_repeats, 10);
  assert.equal(d.subsets[0].caption_extension, ".txt");
  assert.equal(d.subsets[0].keep_tokens, 1);
  assert.equal(d.subsets[1].keep_tokens, 0);
  assert.equal(d.subsets[1].is_reg, true);
  assert.equal(d.subsets[1].num_repeats, 1);
  assert.equal(d.subsets[0].shuffle_caption, true);
  assert.equal(d.subsets[0].flip_aug, true, "falls back to the command line");
  // Without a dataset value the command line's batch size is used.
  const bp2 = generateBlueprint(
    parseDatasetConfig('[[datasets]]\n[[datasets.subsets]]\nimage_dir = "x"\n', "c.toml"),
    { ...argDefaults, train_batch_size: 3, resolution: "512" },
  );
  assert.equal(bp2.datasets[0].params.batch_size, 3);
  assert.deepEqual(bp2.datasets[0].params.resolution, [512, 512]);
});

Deno.test("config errors name the file, section and key", () => {
  const typo = TOML.replace("is_reg = true", "is_regg = true");
  assert.throws(
    () => parseDatasetConfig(typo, "cfg.toml"),
    /cfg\.toml: datasets\[0\]\.subsets\[1\]\.is_regg: unknown key .*did you mean "is_reg"/,
  );
  assert.throws(
    () => parseDatasetConfig(TOML.replace("num_repeats = 10", 'num_repeats = "ten"'), "cfg.toml"),
    /datasets\[0\]\.subsets\[0\]\.num_repeats: expected an integer, found the string "ten"/,
  );
  assert.throws(
    () => parseDatasetConfig(TOML.replace("keep_tokens = 1", "keep_tokens = 1.5"), "cfg.toml"),
    /general\.keep_tokens: expected an integer/,
  );
  assert.throws(
    () => parseDatasetConfig('[general]\nimage_dir = "x"\n', "g.toml"),
    /g\.toml: general\.image_dir: unknown key/,
  );
  assert.throws(
    () =>
      parseDatasetConfig(
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "a"\n[[datasets.subsets]]\nmetadata_file = "m.json"\n',
        "m.toml",
      ),
    /cannot be mixed/,
  );
  assert.throws(
    () => parseDatasetConfig("[[datasets]]\n[[datasets.subsets]]\nnum_repeats = 2\n", "r.toml"),
    /datasets\[0\]\.subsets\[0\]: required key image_dir is missing/,
  );
  assert.throws(() => parseDatasetConfig("[general\n", "bad.toml"), /bad\.toml: not valid TOML/);
  const steps = TOML.replace(
    "enable_bucket = true",
    "enable_bucket = true\nbucket_reso_steps = 32",
  );
  assert.throws(
    () => generateBlueprint(parseDatasetConfig(steps, "s.toml"), argDefaults),
    /bucket_reso_steps is 32; for SD 1\.x\/2\.x it must be divisible by 64/,
  );
  const noRes = '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "x"\n';
  assert.throws(
    () => generateBlueprint(parseDatasetConfig(noRes, "n.toml"), argDefaults),
    /resolution is required/,
  );
});

Deno.test("DreamBooth folders: captions, class tokens, skipped images, reg balancing, buckets", async () => {
  const root = await Deno.makeTempDir();
  try {
    const train = `${root}/train`, reg = `${root}/reg`;
    await Deno.mkdir(`${train}/3_sks dog`, { recursive: true });
    await Deno.mkdir(`${train}/no_repeats`);
    await Deno.mkdir(`${reg}/1_dog`, { recursive: true });
    await Deno.writeFile(`${train}/3_sks dog/a.png`, png(1024, 640));
    await Deno.writeTextFile(`${train}/3_sks dog/a.txt`, "Sks Dog, red\nignored second line\n");
    await Deno.writeFile(`${train}/3_sks dog/b.PNG`, png(512, 512));
    await Deno.writeFile(`${train}/3_sks dog/c.png`, new Uint8Array([1, 2, 3]));
    await Deno.writeFile(`${train}/3_sks dog/d.gif`, png(8, 8));
    for (const n of ["r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8"]) {
      await Deno.writeFile(`${reg}/1_dog/${n}.jpg`, jpeg(300, 200));
    }
    const { config, warnings } = await userConfigFromArgs({
      train_data_dir: train,
      reg_data_dir: reg,
    });
    assert.ok(warnings.some((w) => w.includes("no_repeats")));
    const bp = generateBlueprint(config, {
      ...argDefaults,
      caption_extension: ".txt",
      resolution: "512",
      enable_bucket: true,
    });
    const scan = await scanDataset(bp.datasets[0]);
    assert.deepEqual(scan.skipped.map((s) => s.path), [`${train}/3_sks dog/c.png`]);
    const train1 = scan.images.filter((i) => !i.isReg);
    assert.deepEqual(train1.map((i) => i.caption), ["Sks Dog, red", "sks dog"]);
    assert.equal(scan.numTrainImages, 6);
    assert.equal(scan.numRegImages, 8);
    // Balancing: reg images are taken in order until their repeats reach 6 train images.
    const regs = scan.images.filter((i) => i.isReg);
    assert.equal(regs.reduce((n, i) => n + i.numRepeats, 0), 6);
    assert.equal(regs.length, 6);
    // c.png is skipped but its caption (class tokens) still counts, as in kohya.
    assert.deepEqual({ ...scan.tagFrequency["3_sks dog"] }, { "sks dog": 3, red: 1 });
    const { manager, meanArError } = makeDatasetBuckets(scan, bp.datasets[0].params);
    assert.deepEqual(manager.resos, [[512, 512], [640, 384]]);
    assert.deepEqual(manager.buckets.map((b) => b.length), [3, 3 + 6]);
    assert.ok(meanArError !== null && meanArError > 0);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("a non-UTF-8 caption and a missing folder are errors naming them", async () => {
  const root = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${root}/1_x`);
    await Deno.writeFile(`${root}/1_x/a.png`, png(64, 64));
    await Deno.writeFile(`${root}/1_x/a.caption`, new Uint8Array([0xff, 0xfe, 0x41]));
    const { config } = await userConfigFromArgs({ train_data_dir: root });
    const bp = generateBlueprint(config, { ...argDefaults, resolution: "512" });
    await assert.rejects(() => scanDataset(bp.datasets[0]), /a\.caption: expected UTF-8/);
    const missing = generateBlueprint(
      parseDatasetConfig(
        `[[datasets]]\n[[datasets.subsets]]\nimage_dir = "${root}/nope"\n`,
        "c.toml",
      ),
      { ...argDefaults, resolution: "512" },
    );
    await assert.rejects(() => scanDataset(missing.datasets[0]), /nope: image folder not found/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("header sizes: PNG, JPEG, WebP, BMP", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/a.png`, png(7, 9));
    await Deno.writeFile(`${dir}/a.jpg`, jpeg(300, 200));
    const webp = new Uint8Array(30);
    webp.set(new TextEncoder().encode("RIFF\0\0\0\0WEBPVP8X"));
    webp.set([99, 0, 0, 49, 0, 0], 24);
    await Deno.writeFile(`${dir}/a.webp`, webp);
    const bmp = new Uint8Array(54);
    bmp.set([0x42, 0x4d]);
    const dv = new DataView(bmp.buffer);
    dv.setUint32(14, 40, true);
    dv.setInt32(18, 20, true);
    dv.setInt32(22, -10, true);
    await Deno.writeFile(`${dir}/a.bmp`, bmp);
    assert.deepEqual(await readImageSize(`${dir}/a.png`), { width: 7, height: 9, format: "png" });
    assert.deepEqual(await readImageSize(`${dir}/a.jpg`), {
      width: 300,
      height: 200,
      format: "jpeg",
    });
    assert.deepEqual(await readImageSize(`${dir}/a.webp`), {
      width: 100,
      height: 50,
      format: "webp",
    });
    assert.deepEqual(await readImageSize(`${dir}/a.bmp`), { width: 20, height: 10, format: "bmp" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** SOI, an APP0 segment, then SOF0 with the size. */
function jpeg(w: number, h: number): Uint8Array {
  return new Uint8Array([
    0xff,
    0xd8,
    0xff,
    0xe0,
    0x00,
    0x06,
    0x4a,
    0x46,
    0x49,
    0x46,
    0xff,
    0xc0,
    0x00,
    0x11,
    0x08,
    h >> 8,
    h & 255,
    w >> 8,
    w & 255,
    0x03,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
  ]);
}
