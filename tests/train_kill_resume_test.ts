/**
 * Nothing is lost when train_network dies: a run killed with SIGKILL between steps, in the middle
 * of a state save and in the middle of a LoRA save, then stopped with Ctrl-C, and each time
 * continued from its newest complete state, ends with a LoRA whose tensors are bit-identical to an
 * uninterrupted run's on the same adapter; every file left on disk is complete and no temporary
 * file remains. The Ctrl-C message's command is run as printed.
 */
import assert from "node:assert/strict";
import { openSafetensors } from "../core/io/safetensors.ts";
import { STATE_FILE } from "../core/train/checkpoint_state.ts";
import { fixture } from "./fixtures.ts";
import { makeTrainData, tinyLoraArgv } from "./train_fixture_data.ts";

const MODEL = fixture("sd1-tiny/model.safetensors");
const DENO = Deno.execPath();
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PRELOAD = `${REPO}/tests/hang_in_save_preload.ts`;
const STEPS = 8;

/** A running train_network process whose stderr is read line by line. */
class Run {
  readonly child: Deno.ChildProcess;
  readonly lines: string[] = [];
  readonly done: Promise<Deno.CommandStatus>;
  #waiters: { test: (l: string) => boolean; resolve: () => void }[] = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = new Deno.Command(DENO, {
      args: ["run", "-A", "--preload", PRELOAD, "cli/main.ts", "train_network", ...args],
      cwd: REPO,
      env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reading = this.#read();
    this.done = reading.then(() => this.child.status);
  }

  async #read(): Promise<void> {
    const lines = this.child.stderr.pipeThrough(new TextDecoderStream());
    let rest = "";
    for await (const chunk of lines) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const l of parts) this.#line(l);
    }
    if (rest) this.#line(rest);
    for (const w of this.#waiters) w.resolve();
  }

  #line(l: string): void {
    this.lines.push(l);
    this.#waiters = this.#waiters.filter((w) => {
      if (!w.test(l)) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves when a line matches (or the process has ended). */
  until(test: (l: string) => boolean): Promise<void> {
    if (this.lines.some(test)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ test, resolve }));
  }

  get text(): string {
    return this.lines.join("\n");
  }
}

function trainArgs(dataToml: string, out: string): string[] {
  const steps = ["--max_train_steps", String(STEPS), "--learning_rate", "1e-2", "--seed", "7"];
  const saves = ["--output_name", "t", "--save_state", "--save_every_n_steps", "1"];
  return tinyLoraArgv(MODEL!, dataToml, out, ...steps, ...saves);
}

/** The newest `t-stepNNNNNNNN-state` folder that holds a state file, or null. */
function newestState(out: string): string | null {
  let best: [number, string] | null = null;
  for (const e of Deno.readDirSync(out)) {
    const m = /^t-step(\d{8})-state$/.exec(e.name);
    if (!m || !e.isDirectory) continue;
    try {
      Deno.statSync(`${out}/${e.name}/${STATE_FILE}`);
    } catch {
      continue;
    }
    if (!best || Number(m[1]) > best[0]) best = [Number(m[1]), `${out}/${e.name}`];
  }
  return best?.[1] ?? null;
}

/** Every file under `dir` (recursively). */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out.sort();
}

async function tensorsOf(path: string): Promise<Map<string, Uint8Array>> {
  const f = await openSafetensors(path);
  try {
    const out = new Map<string, Uint8Array>();
    for (const t of f.header.tensors) out.set(t.name, (await f.readRaw(t.name)).slice());
    return out;
  } finally {
    f.close();
  }
}

async function killed(run: Run, signal: Deno.Signal): Promise<void> {
  run.child.kill(signal);
  const status = await run.done;
  assert.ok(!status.success, run.text);
}

Deno.test({
  name: "train_network: SIGKILL between steps and inside saves, then Ctrl-C, resume bit-identical",
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    if (!MODEL) return;
    const d = await makeTrainData();
    const whole = `${d.root}/whole`, cut = `${d.root}/cut`;
    const mark = `${d.root}/hang-mark`;
    try {
      const reference = new Run(trainArgs(d.toml, whole));
      assert.equal((await reference.done).code, 0, reference.text);

      // 1. SIGKILL once a state exists, wherever the run is by then.
      const first = new Run(trainArgs(d.toml, cut));
      await first.until((l) => l.startsWith(`saved state ${cut}/t-step00000002-state`));
      await killed(first, "SIGKILL");
      const state = newestState(cut);
      assert.ok(state, first.text);

      // 2. SIGKILL inside a state save: the second save after resuming (step s+1's LoRA is the
      // first) hangs after writing its temporary file and before renaming it.
      const resumeArgs = () => [...trainArgs(d.toml, cut), "--resume", state!];
      const second = new Run(resumeArgs(), { LORAKIT_HANG_AT_SYNC: "2", LORAKIT_HANG_MARK: mark });
      while (!(await Deno.stat(mark).then(() => true, () => false))) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await killed(second, "SIGKILL");
      assert.ok(second.text.includes(`resumed from ${state}: step`), second.text);
      const s = Number(/step(\d{8})/.exec(state!)![1]);
      const hungState = `${cut}/t-step${String(s + 1).padStart(8, "0")}-state`;
      const hungFiles = [...Deno.readDirSync(hungState)].map((e) => e.name);
      assert.ok(!hungFiles.includes(STATE_FILE), `half-saved state renamed: ${hungFiles}`);
      assert.ok(hungFiles.some((n) => /\.[0-9a-f]{8}\.tmp$/.test(n)), `no temporary: ${hungFiles}`);
      assert.equal(newestState(cut), state, "a half-written state is never the newest");
      await Deno.remove(mark);

      // 3. SIGKILL inside a LoRA save: the first save after resuming; the file from the killed
      // run above stays complete beside the temporary one.
      const loraPath = `${cut}/t-step${String(s + 1).padStart(8, "0")}.safetensors`;
      const before = await Deno.readFile(loraPath);
      const third = new Run(resumeArgs(), { LORAKIT_HANG_AT_SYNC: "1", LORAKIT_HANG_MARK: mark });
      while (!(await Deno.stat(mark).then(() => true, () => false))) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await killed(third, "SIGKILL");
      assert.deepEqual(await Deno.readFile(loraPath), before, "the previous file is intact");
      assert.ok(
        [...Deno.readDirSync(cut)].some((e) =>
          e.name.startsWith("t-step") && e.name.endsWith(".tmp")
        ),
      );

      // 4. Ctrl-C after one more step: the message prints the command that continues.
      const fourth = new Run(resumeArgs());
      await fourth.until((l) => l.startsWith(`saved state ${cut}/t-step`));
      fourth.child.kill("SIGINT");
      assert.equal((await fourth.done).code, 130, fourth.text);
      const at = fourth.lines.findIndex((l) => l.endsWith("to continue, run:"));
      assert.ok(at >= 0, fourth.text);
      const command = fourth.lines[at + 1].trim();
      assert.match(command, /^deno run -A cli\/main\.ts train_network /);
      assert.match(command, /--resume \S+-state$/);
      assert.equal(command.match(/--resume/g)!.length, 1, command);

      // 5. The printed command, run by a shell, finishes the run.
      const last = await new Deno.Command("sh", {
        args: ["-c", command],
        cwd: REPO,
        env: { PATH: `${DENO.replace(/\/[^/]*$/, "")}:${Deno.env.get("PATH") ?? ""}` },
        stdout: "null",
        stderr: "piped",
      }).output();
      const lastText = new TextDecoder().decode(last.stderr);
      assert.equal(last.code, 0, lastText);
      assert.match(lastText, /resumed from \S+-state: step [3-7],/);

      const want = await tensorsOf(`${whole}/t.safetensors`);
      const got = await tensorsOf(`${cut}/t.safetensors`);
      assert.deepEqual([...got.keys()], [...want.keys()]);
      for (const [name, bytes] of want) assert.deepEqual(got.get(name), bytes, name);
      // Every file is complete: no temporary file is left and each save parses whole.
      const files = filesUnder(cut);
      assert.deepEqual(files.filter((f) => f.endsWith(".tmp")), []);
      for (const f of files.filter((f) => f.endsWith(".safetensors"))) await tensorsOf(f);
    } finally {
      await Deno.remove(d.root, { recursive: true });
    }
  },
});
