/**
 * The training dashboard: its status and history from step records (a resumed run's history
 * included), its address parsing, and — when Chromium is installed — the real page in headless
 * Chromium during and after a short training run: a plot point per logged step, the sample image
 * loaded, the end of the run stated. A screenshot goes to out/test-artifacts/ (not in git).
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { serveDashboard } from "../cli/train_dashboard.ts";
import { Dashboard, parseListenAddress } from "../core/train/dashboard.ts";
import { trainNetwork } from "../core/train/loop.ts";
import { parseTrainArgs } from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { initGpu } from "../gpu/mod.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, tinyLoraArgv } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
  .find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });

const rec = (step: number, loss: number, extra: Record<string, number> = {}) => ({
  step,
  epoch: 1,
  "loss/current": loss,
  "loss/average": loss + 0.5,
  lr: 1e-3,
  time: step * 0.5,
  gpu_live_bytes: 1000,
  gpu_peak_bytes: 2000,
  total_steps: 10,
  total_epochs: 2,
  batch: step,
  batches_per_epoch: 5,
  bucket_width: 128,
  bucket_height: 64,
  ...extra,
});

Deno.test("dashboard: status, history, a resumed run's history and the routes", async () => {
  const dash = new Dashboard();
  const server = serveDashboard(dash, "127.0.0.1:0");
  try {
    dash.addHistory([rec(1, 0.9), rec(2, 0.8), rec(3, 0.7), { note: "not a step" }]);
    assert.equal(dash.status().points, 3);
    assert.equal(dash.status().state, "starting");
    // Resumed from step 2's state: the earlier run's step 3 gives way to this run's.
    dash.record(rec(3, 0.65));
    dash.record(rec(4, 0.6));
    const s = dash.status();
    assert.equal(s.state, "training");
    assert.equal(s.points, 4);
    assert.equal(s.step, 4);
    assert.equal(s.total_steps, 10);
    assert.equal(s.bucket, "128x64");
    assert.equal(s.loss, 0.6);
    assert.equal(s.avg_loss, 1.1);
    assert.equal(s.lr, 1e-3);
    // Under a second of points: this run's 2 steps over its 2 s since training began.
    assert.equal(s.it_per_s, 1);
    assert.equal(s.eta_s, 6);
    dash.record(rec(5, 0.55));
    dash.record(rec(6, 0.5));
    assert.equal(dash.status().it_per_s, 2); // a step per 0.5 s over the last 1.5 s
    assert.equal(s.gpu_pool_bytes, 1000);
    const history = await (await fetch(`${server.url}history.json?from=0`)).json();
    assert.deepEqual(history.points.map((p: { step: number }) => p.step), [1, 2, 3, 4, 5, 6]);
    assert.equal(history.points[2].loss, 0.65);
    const status = await (await fetch(`${server.url}status.json`)).json();
    for (
      const k of [
        "step",
        "total_steps",
        "epoch",
        "loss",
        "avg_loss",
        "lr",
        "it_per_s",
        "eta_s",
        "gpu_pool_bytes",
        "samples",
        "finished",
      ]
    ) assert.ok(k in status, k);
    const page = await (await fetch(server.url)).text();
    assert.match(page, /<script type="module">/);
    assert.ok(!/https?:\/\/(?!127)/.test(page.replace(/xmlns="[^"]*"/g, "")), "no external URL");
    const plot = await fetch(`${server.url}plot.js`);
    assert.match(plot.headers.get("content-type") ?? "", /javascript/);
    assert.match(await plot.text(), /export function lineChartSvg/);
    assert.equal((await fetch(`${server.url}sample/0`)).status, 404);
    dash.finish("finished", "");
    assert.equal(dash.status().finished, true);
  } finally {
    await server.close();
  }
});

Deno.test("dashboard: listen addresses", () => {
  assert.deepEqual(parseListenAddress(null), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseListenAddress("8080"), { hostname: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseListenAddress(":8080"), { hostname: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseListenAddress("0.0.0.0:9"), { hostname: "0.0.0.0", port: 9 });
  assert.deepEqual(parseListenAddress("[::1]:9"), { hostname: "::1", port: 9 });
  assert.throws(() => parseListenAddress("host:99999"), LorakitError);
  assert.throws(() => parseListenAddress("a:b:c"), /--dashboard: expected \[host\]\[:port\]/);
});

/** The page's DOM after Chromium has run it for `budgetMs` of virtual time. */
async function dumpDom(url: string, budgetMs: number, screenshot?: string): Promise<string> {
  const common = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-extensions",
    `--virtual-time-budget=${budgetMs}`,
    "--window-size=1280,1500",
  ];
  const dataDir = await Deno.makeTempDir({ prefix: "lorakit-chromium-" });
  try {
    const run = async (extra: string[]) => {
      const out = await new Deno.Command(CHROMIUM!, {
        args: [...common, `--user-data-dir=${dataDir}`, ...extra, url],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      return new TextDecoder().decode(out.stdout);
    };
    if (screenshot) await run([`--screenshot=${screenshot}`]);
    return await run(["--dump-dom"]);
  } finally {
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
  }
}

const attr = (dom: string, re: RegExp) => dom.match(re)?.[1] ?? null;

Deno.test({
  name: "dashboard in headless Chromium during and after a training run",
  ignore: CHROMIUM === undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    await initGpu();
    const d = await makeTrainData();
    const prompts = `${d.root}/prompts.txt`;
    await Deno.writeTextFile(prompts, "sks toy, red --w 64 --h 64 --s 2 --d 5\n");
    const dash = new Dashboard();
    const server = serveDashboard(dash, null);
    try {
      const sampling = ["--sample_prompts", prompts, "--sample_every_n_steps", "4"];
      const argv = tinyLoraArgv(MODEL, d.toml, `${d.root}/out`, "--max_train_steps", "6");
      const args = await parseTrainArgs([...argv, ...sampling], { onNote: () => {} });
      let logged = 0;
      let midRun: Promise<string> | null = null;
      const result = await trainNetwork(planTrainRun(args), {
        message: () => {},
        remove: (p) => Deno.remove(p, { recursive: true }).catch(() => {}),
        log: (line) => {
          dash.record(JSON.parse(line));
          // While training goes on, a browser opens the page.
          if (++logged === 2) midRun = dumpDom(server.url, 2500);
        },
        sampleWritten: (s) => dash.sample(s),
      });
      const during = await midRun!;
      assert.match(during, /id="state" data-state="training"/);
      const duringPoints = Number(attr(during, /data-label="loss" data-points="(\d+)"/));
      assert.ok(duringPoints >= 2 && duringPoints <= 6, `points during the run: ${duringPoints}`);

      dash.finish("finished", "");
      const shot = new URL("../out/test-artifacts/dashboard.png", import.meta.url).pathname;
      await Deno.mkdir(shot.replace(/\/[^/]*$/, ""), { recursive: true });
      const after = await dumpDom(server.url, 3000, shot);
      assert.equal(result.losses.length, 6);
      assert.match(after, /id="state" data-state="finished"/);
      assert.match(after, /The run finished at step 6\./);
      assert.equal(Number(attr(after, /data-label="loss" data-points="(\d+)"/)), logged);
      assert.equal(logged, 6);
      const imgs = after.match(/<img [^>]*>/g) ?? [];
      assert.equal(imgs.length, 1, after);
      assert.match(imgs[0], /data-loaded="1"/);
      assert.match(imgs[0], /alt="sks toy, red"/);
      assert.ok(Deno.statSync(shot).size > 10_000, "a screenshot was written");
    } finally {
      await server.close();
      await Deno.remove(d.root, { recursive: true });
    }
  },
});
