/**
 * The embedded demo (`cli/demo.ts`, `core/demo/`): the random SD1 writer loads as SD1 with 2
 * heads, the committed trained base model loads with the same architecture, the dataset (orange
 * objects with the trigger word) parses under the training code's own config parser, the world's
 * colour reader sees what was drawn, its command line parses as train_network flags, the plot
 * and log helpers work, and a very short run writes the report with a loss log and PNG info.
 * Needs no fixtures.
 */
import assert from "node:assert/strict";
import { initGpu } from "../gpu/mod.ts";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { generateBlueprint, parseDatasetConfig } from "../core/kohya/dataset_config.ts";
import { scanDataset } from "../core/train/dataset_scan.ts";
import { makeDatasetBuckets } from "../core/train/dataset_buckets.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { tinySd1Config, writeTinyModel, yamlPathFor } from "../core/demo/tiny_model.ts";
import { drawDemoImage, writeSyntheticDataset } from "../core/demo/synthetic_dataset.ts";
import { demoBasePath } from "../core/demo/base_model.ts";
import { readScene } from "../core/demo/world.ts";
import { parseInfotext } from "../core/sample/infotext.ts";
import { readTextChunks } from "../core/image/png_chunks.ts";
import { drawLossPlot, movingAverage, niceStep, tickLabel } from "../core/demo/loss_plot.ts";
import { lossChartSvg, parseLossLog } from "../core/demo/train_log.ts";
import { demoTrainArgs } from "../core/demo/train_command.ts";
import { base64, ORANGE_OBJECT_MIN } from "../core/demo/report.ts";
import { runDemo } from "../cli/demo.ts";

Deno.test("demo base model: SD1 topology with 2 heads, deterministic bytes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = `${dir}/a.safetensors`, b = `${dir}/b.safetensors`;
    await writeTinyModel(a, 7);
    await writeTinyModel(b, 7);
    const ckpt = await loadCheckpoint(a);
    try {
      assert.deepEqual(ckpt.config, tinySd1Config());
      assert.equal(ckpt.format, "ldm-safetensors");
      assert.ok(ckpt.names().length > 600);
    } finally {
      ckpt.close();
    }
    assert.deepEqual(await Deno.readFile(a), await Deno.readFile(b));
    assert.match(await Deno.readTextFile(yamlPathFor(a)), /num_heads: 2/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("demo base model: the committed trained checkpoint is the tiny SD1 with its yaml", async () => {
  const ckpt = await loadCheckpoint(demoBasePath());
  try {
    assert.deepEqual(ckpt.config, tinySd1Config());
    assert.equal(ckpt.format, "ldm-safetensors");
  } finally {
    ckpt.close();
  }
  const size = (await Deno.stat(demoBasePath())).size;
  assert.ok(size < 25e6, `base model ${size} bytes`);
});

Deno.test("demo dataset: orange objects with the trigger, reg images without, one bucket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ds = await writeSyntheticDataset({
      dir,
      trainImages: 4,
      regImages: 2,
      trigger: "lkdemo",
      seed: 3,
    });
    assert.equal(ds.train.length, 4);
    assert.ok(ds.train.every((s) => /^lkdemo \w+ on a \w+ background$/.test(s.caption)));
    assert.ok(ds.reg.every((s) => !s.caption.includes("lkdemo")));
    const caption = await Deno.readTextFile(`${ds.trainDir}/${ds.train[1].stem}.txt`);
    assert.equal(caption.trim(), ds.train[1].caption);
    const toml = await Deno.readTextFile(ds.tomlPath);
    const bp = generateBlueprint(parseDatasetConfig(toml, ds.tomlPath), {
      train_batch_size: 1,
      dataset_repeats: 1,
      caption_extension: ".caption",
      resolution: null,
      enable_bucket: false,
      min_bucket_reso: 256,
      max_bucket_reso: 1024,
      bucket_reso_steps: 64,
      prior_loss_weight: 1,
    });
    const scan = await scanDataset(bp.datasets[0]);
    assert.equal(scan.numTrainImages, 4);
    assert.equal(scan.numRegImages, 2);
    const { manager } = makeDatasetBuckets(scan, bp.datasets[0].params);
    const used = manager.resos.filter((_, i) => manager.buckets[i].length > 0);
    assert.deepEqual(used, [[64, 64]]);
    // The drawing is deterministic, and the colour reader finds the orange object on the
    // captioned background, and the regularization images' colours.
    const img = drawDemoImage(ds.train[0]);
    assert.deepEqual(img.data, drawDemoImage(ds.train[0]).data);
    assert.equal(img.width * img.height * 3, img.data.length);
    for (const s of ds.train) {
      const r = readScene(drawDemoImage(s));
      assert.equal(r.object, "orange", s.caption);
      assert.ok(r.orangeFraction > 2 * ORANGE_OBJECT_MIN, s.caption);
      assert.equal(r.background, s.caption.split(" ")[4], s.caption);
    }
    for (const s of ds.reg) {
      const r = readScene(drawDemoImage(s));
      const words = s.caption.split(" ");
      assert.deepEqual([r.object, r.background], [words[1], words[5]], s.caption);
      // Only anti-aliased edges between red and yellow can look orange, too few to count.
      assert.ok(r.orangeFraction < ORANGE_OBJECT_MIN, `${s.caption}: ${r.orangeFraction}`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("demo training command parses as train_network flags", async () => {
  const args = demoTrainArgs({
    model: "/m.safetensors",
    datasetConfig: "/d.toml",
    outputDir: "/o",
    outputName: "x",
    loggingDir: "/l",
    steps: 10,
    networkDim: 4,
    networkAlpha: 4,
    learningRate: 0.002,
    unetOnly: true,
    minSnrGamma: 5,
    seed: 1,
    sampling: { everySteps: 5, promptsFile: "/p.txt" },
  });
  const parsed = await parseTrainArgs(args, { onNote: () => {} });
  assert.equal(parsed.max_train_steps, 10);
  assert.equal(parsed.network_dim, 4);
  assert.equal(parsed.cache_latents, true);
  assert.equal(parsed.sample_every_n_steps, 5);
  assert.equal(parsed.network_train_unet_only, true);
  assert.equal(parsed.min_snr_gamma, 5);
});

Deno.test("demo loss log and plot helpers", () => {
  const text = '{"step":1,"loss":0.5}\n{"global_step":2,"loss/current":0.25}\n{"epoch":1}\n\n';
  assert.deepEqual(parseLossLog(text, "x.jsonl"), [{ step: 1, loss: 0.5 }, {
    step: 2,
    loss: 0.25,
  }]);
  assert.throws(() => parseLossLog("{oops\n", "bad.jsonl"), /bad\.jsonl:1: expected one JSON/);
  assert.deepEqual(movingAverage([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5]);
  assert.equal(niceStep(1, 5), 0.2);
  assert.equal(tickLabel(0.30000000000000004, 0.1), "0.3");
  const plot = drawLossPlot([{ step: 1, loss: 1 }, { step: 2, loss: 0.5 }], {
    width: 200,
    height: 100,
  });
  assert.equal(plot.data.length, 200 * 100 * 4);
  assert.ok(plot.data.some((v, i) => i % 4 === 0 && v < 100)); // axes and text drawn
  const svg = lossChartSvg([{ step: 1, loss: 1 }, { step: 2, loss: 0.5 }, { step: 3, loss: NaN }]);
  assert.match(svg, /^<svg [^>]*>.*<\/svg>$/s);
  assert.match(svg, /data-label="loss" data-points="2"/);
  assert.match(svg, /data-label="moving average \(1\)" data-points="2"/);
  assert.equal(base64(new TextEncoder().encode("lorakit!")), btoa("lorakit!"));
  assert.equal(base64(new Uint8Array([1, 2])), btoa("\x01\x02"));
});

async function shortRun(): Promise<void> {
  await initGpu();
  const out = await Deno.makeTempDir();
  try {
    const lines: string[] = [];
    const r = await runDemo({
      out,
      steps: 5,
      trainImages: 2,
      regImages: 1,
      seed: 1,
      sampleSteps: 2,
      networkDim: 2,
      learningRate: 1e-3,
      log: (l) => lines.push(l),
    });
    assert.equal(r.lossPoints, 5);
    const c = r.roundTrip.comparison;
    assert.ok(c.modules.length > 0 && c.missing.length === 0, JSON.stringify(c.missing));
    // merged - base is the LoRA's delta to float32 rounding; the extraction adds kohya's clamp.
    const mc = r.roundTrip.mergeCheck;
    assert.ok(mc.overallRelError < 1e-4, `merged - base vs LoRA: ${mc.overallRelError}`);
    assert.ok(c.overallRelError < 0.5, `extract vs trained: ${c.overallRelError}`);
    const mv = r.roundTrip.mergedVsApplied!;
    assert.ok(mv.maxAbs < 1e-3, `merged vs applied: ${mv.maxAbs}`);
    const half = r.response.find((x) => x.multiplier === 0.5)!;
    assert.ok(Math.abs(half.relativeToOne - 0.5) < 0.1, `response at 0.5: ${half.relativeToOne}`);
    assert.ok(lines.some((l) => l.startsWith("total: ")));
    const html = await Deno.readTextFile(r.reportPath);
    assert.match(html, /data:image\/png;base64,/);
    assert.match(html, /Merge and extract round trip/);
    assert.match(html, /What this demo shows/);
    assert.doesNotMatch(html, /do not expect the samples/);
    assert.equal(r.orange.counts.length, 4); // three multipliers and the merged model
    for (const f of ["images/loss.png", "round_trip/merged.safetensors", "data/dataset.toml"]) {
      await Deno.stat(`${out}/${f}`);
    }
    // The grid's images carry A1111's infotext, LoRA and multiplier included.
    const text = readTextChunks(await Deno.readFile(`${out}/images/p0_m0.5.png`));
    const info = parseInfotext(text.parameters);
    assert.match(String(info.Prompt), /^lkdemo circle .*<lora:lkdemo:0\.5>/);
    assert.equal(info.Seed, "11");
    assert.equal(info.Sampler, "DDIM");
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

Deno.test({
  name: "demo end to end with train_network (--steps 5, 2 images)",
  sanitizeResources: false,
  async fn() {
    await shortRun();
  },
});
