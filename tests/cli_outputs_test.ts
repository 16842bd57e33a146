/**
 * Every tool that writes fails at once, before reading its inputs, when an output cannot be
 * written: one line on stderr naming the flag and the path, no stack trace, nothing created.
 * Failures that are not errors of the input print one internal-error line, and the stack only
 * with --debug or LORAKIT_DEBUG=1.
 *
 * Being root, the test cannot make a folder read-only with chmod; the read-only cases use a
 * read-only tmpfs mount and are skipped where mounting is not allowed.
 */
import assert from "node:assert/strict";
import { LorakitError } from "../core/errors.ts";
import { checkWritableFile } from "../core/io/fs.ts";
import { writePng } from "./train_fixture_data.ts";

const MAIN = new URL("../cli/main.ts", import.meta.url).pathname;
const FAILING = new URL("./cli_failing_tools.ts", import.meta.url).pathname;

interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function runScript(script: string, args: string[], env: Record<string, string> = {}) {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", script, ...args],
    env: { XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  const dec = new TextDecoder();
  return {
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
    ms,
  } satisfies Outcome;
}

const lorakit = (args: string[], env: Record<string, string> = {}) => runScript(MAIN, args, env);

/** Every path below `dir`, to show that a failed run created nothing. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of Deno.readDirSync(d)) {
      const p = `${d}/${e.name}`;
      out.push(p);
      if (e.isDirectory) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

/** The stderr lines that are not notes about accepted kohya flags. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("note: "));
}

function assertOneLineFailure(r: Outcome, code: number, flag: string, path: string): void {
  const lines = errorLines(r.stderr);
  assert.equal(r.code, code, `exit code (stderr: ${r.stderr})`);
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.ok(lines[0].startsWith(`error: ${flag}: cannot write there: `), lines[0]);
  assert.ok(lines[0].includes(path), `names ${path}: ${lines[0]}`);
  assert.ok(!r.stderr.includes("    at "), "no stack trace");
  assert.ok(r.ms < 2000, `failed in ${r.ms.toFixed(0)} ms, expected under 2 s`);
}

/** Mount an empty read-only tmpfs at `dir` (created); null where mounting is not allowed. */
async function mountReadOnly(dir: string): Promise<(() => Promise<void>) | null> {
  await Deno.mkdir(dir);
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  if (mount === null || !mount.success) return null;
  const unmount = async () => {
    await new Deno.Command("umount", { args: [dir], stdout: "null", stderr: "null" }).output();
  };
  try {
    await Deno.writeTextFile(`${dir}/probe`, "x");
  } catch {
    return unmount;
  }
  // Writable after all (no read-only mounts here): not a read-only case.
  await unmount();
  return null;
}

/** A tool's command line with its output at `out`, and the flag that names it. */
interface ToolCase {
  tool: string;
  flag: string;
  /** True when the output is a folder (else a file). */
  folder: boolean;
  /** The code of an error of the input. */
  code: number;
  args(dir: string, out: string): string[];
  /** The file written for output path `out`, when it is not `out` itself. */
  written?(out: string): string;
}

const SD = "/nonexistent/never-read/model.safetensors";

/** train_network's flags for a LoRA (the model is never read): the base of every train_network case. */
const TRAIN = [
  "train_network",
  "--pretrained_model_name_or_path",
  SD,
  "--network_module",
  "networks.lora",
  "--resolution",
  "64",
];

/** The flags after the tool name, training on `dir`. */
const trainOn = (dir: string) => [...TRAIN.slice(1), "--train_data_dir", dir];
const LORA = "/nonexistent/never-read/lora.safetensors";

const CASES: ToolCase[] = [
  {
    tool: "merge_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--models", LORA, "--save_to", out],
  },
  {
    tool: "merge_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--sd_model", SD, "--models", LORA, "--save_to", out],
  },
  {
    tool: "sdxl_merge_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--models", LORA, "--ratios", "1", "--save_to", out],
  },
  {
    tool: "sdxl_merge_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--sd_model", SD, "--models", LORA, "--ratios", "1", "--save_to", out],
  },
  {
    tool: "svd_merge_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--models", LORA, "--save_to", out, "--new_rank", "2"],
  },
  {
    tool: "extract_lora_from_models",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--model_org", SD, "--model_tuned", SD, "--save_to", out],
  },
  {
    tool: "extract_lora_from_dylora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--model", LORA, "--unit", "2", "--save_to", out],
    written: (out) => out.replace(/\.safetensors$/, "-0002.safetensors"),
  },
  {
    tool: "resize_lora",
    flag: "--save_to",
    folder: false,
    code: 1,
    args: (_, out) => ["--model", LORA, "--save_to", out, "--new_rank", "2"],
  },
  {
    tool: "gen_img",
    flag: "--outdir",
    folder: true,
    code: 1,
    args: (_, out) => ["--ckpt", SD, "--prompt", "a cat", "--outdir", out],
  },
  {
    tool: "resize_images_to_resolution",
    flag: "dst_img_folder",
    folder: true,
    code: 2,
    args: (dir, out) => [dir, out, "--max_resolution", "64x64"],
  },
  {
    tool: "train_network",
    flag: "--output_dir",
    folder: true,
    code: 1,
    args: (dir, out) => [...trainOn(dir), "--output_dir", out],
  },
  {
    tool: "train_network",
    flag: "--logging_dir",
    folder: true,
    code: 1,
    args: (
      dir,
      out,
    ) => [...trainOn(dir), "--output_dir", `${dir}/new-output`, "--logging_dir", out],
  },
  {
    tool: "demo",
    flag: "--out",
    folder: true,
    code: 1,
    args: (_, out) => ["--out", out],
  },
];

const label = (c: ToolCase) => `${c.tool} ${c.flag}`;

for (const c of CASES) {
  Deno.test(`${label(c)}: a file in the way fails at once in one line`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
    try {
      await Deno.writeTextFile(`${dir}/a-file`, "not a folder");
      const out = c.folder ? `${dir}/a-file/out` : `${dir}/a-file/out.safetensors`;
      const before = tree(dir);
      const r = await lorakit([c.tool, ...c.args(dir, out)]);
      assertOneLineFailure(r, c.code, c.flag, c.folder ? out : `${dir}/a-file`);
      assert.deepEqual(tree(dir), before, "nothing created");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });

  if (!c.folder) {
    Deno.test(`${label(c)}: a folder in the way, or a missing folder, fails at once`, async () => {
      const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
      try {
        const out = `${dir}/taken.safetensors`;
        const written = c.written?.(out) ?? out;
        await Deno.mkdir(written);
        const before = tree(dir);
        const taken = await lorakit([c.tool, ...c.args(dir, out)]);
        assertOneLineFailure(taken, c.code, c.flag, written);
        assert.ok(taken.stderr.includes("a folder of that name is in the way"), taken.stderr);
        const missingOut = `${dir}/no/out.safetensors`;
        const missing = await lorakit([c.tool, ...c.args(dir, missingOut)]);
        assertOneLineFailure(missing, c.code, c.flag, c.written?.(missingOut) ?? missingOut);
        assert.ok(missing.stderr.includes(`the folder ${dir}/no does not exist`), missing.stderr);
        assert.deepEqual(tree(dir), before, "nothing created");
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    });
  }

  Deno.test(`${label(c)}: a read-only disk fails at once in one line`, async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
    const ro = `${dir}/ro`;
    const unmount = await mountReadOnly(ro);
    try {
      if (unmount === null) {
        await t.step({ name: "skipped: no read-only mount here", ignore: true, fn: () => {} });
        return;
      }
      const out = c.folder ? ro : `${ro}/out.safetensors`;
      const before = tree(dir);
      const r = await lorakit([c.tool, ...c.args(dir, out)]);
      assertOneLineFailure(r, c.code, c.flag, ro);
      assert.ok(r.stderr.includes("Read-only file system"), r.stderr);
      assert.deepEqual(tree(dir), before, "nothing created");
    } finally {
      await unmount?.();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("train_network: --output_name naming a missing folder fails at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    const before = tree(dir);
    const r = await lorakit([
      ...TRAIN,
      "--train_data_dir",
      dir,
      "--output_dir",
      `${dir}/out`,
      "--output_name",
      "sub/lora",
    ]);
    assertOneLineFailure(r, 1, "--output_name", `${dir}/out/sub/lora.safetensors`);
    assert.deepEqual(tree(dir), before, "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_network: a file where the sample folder goes fails at once", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    await Deno.mkdir(`${dir}/out`);
    await Deno.writeTextFile(`${dir}/out/sample`, "not a folder");
    await Deno.writeTextFile(`${dir}/prompts.txt`, "a cat\n");
    const before = tree(dir);
    const r = await lorakit([
      ...TRAIN,
      "--train_data_dir",
      dir,
      "--output_dir",
      `${dir}/out`,
      "--sample_prompts",
      `${dir}/prompts.txt`,
      "--sample_every_n_steps",
      "10",
    ]);
    assertOneLineFailure(r, 1, "--sample_prompts", `${dir}/out/sample`);
    assert.deepEqual(tree(dir), before, "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_network --output_config: an impossible --config_file fails in one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    await Deno.writeTextFile(`${dir}/a-file`, "x");
    const before = tree(dir);
    const r = await lorakit([
      ...TRAIN,
      "--train_data_dir",
      dir,
      "--output_config",
      "--config_file",
      `${dir}/a-file/args.toml`,
    ]);
    assertOneLineFailure(r, 1, "--config_file", `${dir}/a-file`);
    assert.deepEqual(tree(dir), before, "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_network --cache_latents_to_disk: a folder in the way of a latent file fails before the model loads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    await Deno.mkdir(`${dir}/data/1_cat`, { recursive: true });
    await writePng(`${dir}/data/1_cat/a.png`, 64, 64, 1);
    const cache = `${dir}/data/1_cat/a.lorakit-latents.safetensors`;
    await Deno.mkdir(cache);
    const before = tree(dir);
    const r = await lorakit([
      ...TRAIN,
      "--train_data_dir",
      `${dir}/data`,
      "--output_dir",
      `${dir}/data`,
      "--cache_latents_to_disk",
    ]);
    // The model path does not exist: failing on the cache first shows nothing was loaded.
    assertOneLineFailure(r, 1, "--cache_latents_to_disk", cache);
    assert.deepEqual(tree(dir), before, "nothing created");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("train_network --cache_latents_to_disk: a read-only image folder fails before the model loads", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  const images = `${dir}/data/1_cat`;
  await Deno.mkdir(`${dir}/data`);
  const unmount = await mountReadOnly(images);
  try {
    if (unmount === null) {
      await t.step({ name: "skipped: no read-only mount here", ignore: true, fn: () => {} });
      return;
    }
    // Fill the mount, then make it read-only.
    const remount = async (mode: string) => {
      const r = await new Deno.Command("mount", {
        args: ["-o", `remount,${mode}`, images],
        stdout: "null",
        stderr: "null",
      }).output();
      assert.ok(r.success, `remount ${mode}`);
    };
    await remount("rw");
    await writePng(`${images}/a.png`, 64, 64, 1);
    await remount("ro");
    const r = await lorakit([
      ...TRAIN,
      "--train_data_dir",
      `${dir}/data`,
      "--output_dir",
      `${dir}/out`,
      "--cache_latents_to_disk",
    ]);
    assertOneLineFailure(r, 1, "--cache_latents_to_disk", images);
    assert.deepEqual(tree(dir), [`${dir}/data`, images, `${images}/a.png`], "nothing created");
  } finally {
    await unmount?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkWritableFile: a writable place passes and nothing is left behind", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    await Deno.writeTextFile(`${dir}/old.safetensors`, "replaced later");
    await checkWritableFile(`${dir}/new.safetensors`, "--save_to");
    await checkWritableFile(`${dir}/old.safetensors`, "--save_to");
    assert.deepEqual(tree(dir), [`${dir}/old.safetensors`]);
    await assert.rejects(
      checkWritableFile(`${dir}/old.safetensors/x.safetensors`, "--save_to"),
      (e: Error) =>
        e instanceof LorakitError &&
        e.message ===
          `--save_to: cannot write there: ${dir}/old.safetensors/x.safetensors: ` +
            `${dir}/old.safetensors is a file, not a folder`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an internal error is one line without --debug, with a stack trace with it", async () => {
  const plain = await runScript(FAILING, ["bug", "x"]);
  assert.equal(plain.code, 70);
  const lines = errorLines(plain.stderr);
  assert.equal(lines.length, 1, plain.stderr);
  assert.match(lines[0], /internal error in lorakit \(a bug/);
  assert.ok(lines[0].includes("TypeError: a forced internal error"), lines[0]);
  assert.ok(lines[0].includes("run again with --debug for the stack trace"), lines[0]);
  assert.ok(!plain.stderr.includes("    at "));

  // --debug anywhere: before the tool or among its arguments.
  for (const args of [["--debug", "bug"], ["bug", "x", "--debug"]]) {
    const debug = await runScript(FAILING, args);
    assert.equal(debug.code, 70);
    assert.ok(debug.stderr.includes("TypeError: a forced internal error"), debug.stderr);
    assert.ok(debug.stderr.includes("    at "), `a stack trace: ${debug.stderr}`);
  }
  const env = await runScript(FAILING, ["bug"], { LORAKIT_DEBUG: "1" });
  assert.equal(env.code, 70);
  assert.ok(env.stderr.includes("    at "), `a stack trace: ${env.stderr}`);
});

Deno.test("an error that escapes the awaited chain is reported as an internal error", async () => {
  const r = await runScript(FAILING, ["escaped"]);
  assert.equal(r.code, 70);
  const lines = errorLines(r.stderr);
  assert.equal(lines.length, 1, r.stderr);
  assert.ok(lines[0].includes("RangeError: a forced escaped error"), lines[0]);
  assert.ok(!r.stderr.includes("    at "));
});

Deno.test("input errors and raw OS errors are one line; --debug adds the stack", async () => {
  const user = await runScript(FAILING, ["user"]);
  assert.equal(user.code, 1);
  assert.deepEqual(errorLines(user.stderr), ["error: --save_to: a forced input error"]);
  const userDebug = await runScript(FAILING, ["user", "--debug"]);
  assert.equal(userDebug.code, 1);
  assert.ok(userDebug.stderr.startsWith("error: --save_to: a forced input error\n"));
  assert.ok(userDebug.stderr.includes("    at "), userDebug.stderr);

  const dir = await Deno.makeTempDir({ prefix: "lorakit-outputs-" });
  try {
    const os = await runScript(FAILING, ["os", `${dir}/missing.bin`]);
    assert.equal(os.code, 1);
    const lines = errorLines(os.stderr);
    assert.equal(lines.length, 1, os.stderr);
    assert.ok(lines[0].startsWith("error: No such file or directory"), lines[0]);
    assert.ok(lines[0].includes(`${dir}/missing.bin`), lines[0]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("--debug is taken off the command line before the tool parses it", async () => {
  const echo = await runScript(FAILING, [
    "--debug",
    "echo",
    "--a",
    "--debug",
    "b",
    "--",
    "--debug",
  ]);
  assert.equal(echo.code, 0);
  assert.deepEqual(JSON.parse(echo.stdout), ["--a", "b", "--", "--debug"]);
  const help = await lorakit(["merge_lora", "--help", "--debug"]);
  assert.equal(help.code, 0, help.stderr);
  assert.ok(help.stdout.includes("usage: lorakit merge_lora"), help.stdout);
  const train = await lorakit(["--debug", "train_network", "--help"]);
  assert.equal(train.code, 0, train.stderr);
  assert.ok(train.stdout.includes("--output_dir"), train.stdout.slice(0, 200));
  const usage = await lorakit(["--help"]);
  assert.ok(usage.stdout.includes("--debug") && usage.stdout.includes("70"), usage.stdout);
});
