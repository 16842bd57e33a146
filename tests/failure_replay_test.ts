/**
 * Seven failures a new user met, replayed through the real command line (a fresh process each,
 * its stderr as a user sees it), each now fixed:
 * 1. sd2-tiny's heads follow its model.yaml (2, 4, 4, 4);
 * 2. an unwritable --output_dir fails at once in one line (train_network, merge_lora);
 * 3. Ctrl-C with --save_state and no --seed prints a command that resumes, and it does;
 * 4. a corrupt image is listed before training and left out of the counts;
 * 5. a merge killed during its save leaves a temporary file the next merge removes;
 * 6. no XDG_RUNTIME_DIR warning; merge progress off a terminal is a few lines, not one per layer;
 * 7. merging into a checkpoint copies its yaml, and extraction works on the merged model.
 */
import assert from "node:assert/strict";
import { loadCheckpoint } from "../core/io/checkpoint.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, tinyLoraArgv } from "./train_fixture_data.ts";

const SD1 = fixture("sd1-tiny/model.safetensors");
const SD2 = fixture("sd2-tiny/model.safetensors");
const LORA = fixture("kohya/lierla_a.safetensors");
const DENO = Deno.execPath();
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PRELOAD = `${REPO}/tests/hang_in_save_preload.ts`;

/** The environment without XDG_RUNTIME_DIR (item 6: as on a server or in a container). */
function bareEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env = { ...Deno.env.toObject(), ...extra };
  delete env.XDG_RUNTIME_DIR;
  return env;
}

async function lorakit(
  args: string[],
  extra: Record<string, string> = {},
): Promise<{ code: number; stderr: string; seconds: number }> {
  const t0 = performance.now();
  const out = await new Deno.Command(DENO, {
    args: ["run", "-A", "cli/main.ts", ...args],
    cwd: REPO,
    env: bareEnv(extra),
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assert.ok(!stderr.includes("XDG_RUNTIME_DIR"), `item 6: XDG warning in\n${stderr}`);
  return { code: out.code, stderr, seconds: (performance.now() - t0) / 1000 };
}

function assertOneLine(r: { code: number; stderr: string }, ...parts: string[]): void {
  assert.equal(r.code, 1, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(!r.stderr.includes("    at "), r.stderr);
  for (const p of parts) assert.ok(lines[0].includes(p), `${p} missing in ${lines[0]}`);
}

Deno.test("replay 1: sd2-tiny's U-Net heads follow model.yaml (2, 4, 4, 4)", async () => {
  if (!SD2) return;
  const ck = await loadCheckpoint(SD2);
  try {
    assert.deepEqual(ck.config.unet.numHeads, [2, 4, 4, 4]);
  } finally {
    ck.close();
  }
});

Deno.test("replay 2: an unwritable output fails before any work, in one line", async () => {
  if (!SD1 || !LORA) return;
  const dir = await Deno.makeTempDir({ prefix: "lorakit-replay-" });
  try {
    await Deno.writeTextFile(`${dir}/file`, "in the way");
    const train = await lorakit([
      "train_network",
      "--pretrained_model_name_or_path",
      SD1,
      "--train_data_dir",
      dir,
      "--output_dir",
      `${dir}/file/out`,
      "--network_module",
      "networks.lora",
    ]);
    assertOneLine(train, "--output_dir", `${dir}/file/out`);
    const merge = await lorakit([
      "merge_lora",
      "--sd_model",
      SD1,
      "--models",
      LORA,
      "--ratios",
      "1",
      "--save_to",
      `${dir}/file/merged.safetensors`,
    ]);
    assertOneLine(merge, "--save_to", `${dir}/file/merged.safetensors`);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["file"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "replay 3 and 4: a corrupt image is listed up front; Ctrl-C, then the printed command",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!SD1) return;
    const d = await makeTrainData();
    try {
      const good = await Deno.readFile(`${d.trainDir}/a.png`);
      await Deno.writeFile(`${d.trainDir}/bad.png`, good.subarray(0, 60));
      const child = new Deno.Command(DENO, {
        args: [
          ...["run", "-A", "cli/main.ts", "train_network"],
          ...tinyLoraArgv(SD1, d.toml, `${d.root}/out`, "--max_train_steps", "10", "--save_state"),
        ],
        cwd: REPO,
        env: bareEnv(),
        clearEnv: true,
        stdout: "null",
        stderr: "piped",
      }).spawn();
      let text = "";
      let signalled = false;
      for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
        text += chunk;
        // Interrupt once the first step has been reported.
        if (!signalled && /\] 1\/10 /.test(text)) {
          child.kill("SIGINT");
          signalled = true;
        }
      }
      const status = await child.status;
      assert.equal(status.code, 130, text);
      // 4: listed once, before training, and not counted (2 train images of 3 files).
      const listed = text.indexOf("left out 1 of 4 images");
      assert.ok(listed >= 0, text);
      assert.ok(text.includes(`${d.trainDir}/bad.png: `), text);
      const running = text.indexOf("running training: 2 train images");
      assert.ok(running > listed, text);
      assert.ok(!/skipped .*bad\.png/.test(text.slice(running)), "not reported mid-run");
      // 3: the message is the whole command; it needs no --seed.
      const m = /to continue, run:\n {2}(.*)\n/.exec(text);
      assert.ok(m, text);
      assert.ok(!m[1].includes("--seed"), m[1]);
      const resumed = await new Deno.Command("sh", {
        args: ["-c", m[1]],
        cwd: REPO,
        env: bareEnv({ PATH: `${DENO.replace(/\/[^/]*$/, "")}:${Deno.env.get("PATH") ?? ""}` }),
        clearEnv: true,
        stdout: "null",
        stderr: "piped",
      }).output();
      const again = new TextDecoder().decode(resumed.stderr);
      assert.equal(resumed.code, 0, again);
      assert.match(again, /resumed from \S+-state: step [1-9],/);
      assert.ok(Deno.statSync(`${d.root}/out/last.safetensors`).isFile);
    } finally {
      await Deno.remove(d.root, { recursive: true });
    }
  },
});

Deno.test("replay 5 and 6: a merge killed in its save; the next one cleans up; few lines", async () => {
  if (!LORA) return;
  const b = fixture("kohya/lierla_b.safetensors")!;
  const dir = await Deno.makeTempDir({ prefix: "lorakit-replay-" });
  try {
    const out = `${dir}/merged.safetensors`;
    const argv = ["merge_lora", "--models", LORA, b, "--ratios", "0.5", "0.5", "--save_to", out];
    const hung = new Deno.Command(DENO, {
      args: ["run", "-A", "--preload", PRELOAD, "cli/main.ts", ...argv],
      cwd: REPO,
      env: { LORAKIT_HANG_AT_SYNC: "1", LORAKIT_HANG_MARK: `${dir}/mark` },
      stdout: "null",
      stderr: "null",
    }).spawn();
    while (!(await Deno.stat(`${dir}/mark`).then(() => true, () => false))) {
      await new Promise((r) => setTimeout(r, 20));
    }
    hung.kill("SIGKILL");
    await hung.status;
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp"));
    assert.equal(left.length, 1, "the killed save left its temporary file");
    const r = await lorakit(argv);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => n.endsWith(".tmp")),
      [],
    );
    // Off a terminal, progress is a few lines however many layers are merged.
    assert.ok(r.stderr.trim().split("\n").length <= 8, r.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay 7: a merged checkpoint gets its base's yaml; extraction works on it", async () => {
  if (!SD1 || !LORA) return;
  const dir = await Deno.makeTempDir({ prefix: "lorakit-replay-" });
  try {
    const merged = `${dir}/merged.safetensors`;
    const m = await lorakit([
      "merge_lora",
      "--sd_model",
      SD1,
      "--models",
      LORA,
      "--ratios",
      "1",
      "--save_to",
      merged,
    ]);
    assert.equal(m.code, 0, m.stderr);
    assert.equal(
      Deno.readTextFileSync(`${dir}/merged.yaml`),
      Deno.readTextFileSync(SD1.replace(/\.safetensors$/, ".yaml")),
    );
    const e = await lorakit([
      "extract_lora_from_models",
      "--model_org",
      SD1,
      "--model_tuned",
      merged,
      "--dim",
      "4",
      "--save_to",
      `${dir}/extracted.safetensors`,
    ]);
    assert.equal(e.code, 0, e.stderr);
    assert.ok(Deno.statSync(`${dir}/extracted.safetensors`).size > 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
