/**
 * `deno run -A <url>/cli/main.ts <tool>`: the checkout is served over loopback HTTP the way a code
 * host serves raw files (every file as text/plain), and each tool's `--help`, a real
 * check_lora_weights run, the library entry point, a data loader worker (started from a URL
 * relative to its module) and `deno install -g` of the URL run from there with an empty DENO_DIR
 * and a working directory without a deno.json, as on a user's machine. Nothing the checkout's
 * deno.json or the usual cache provides can help, so an import that resolves only locally fails.
 */
import assert from "node:assert/strict";
import { toolNames } from "../cli/main.ts";
import { encodePng } from "../core/image/encode.ts";
import { fixture } from "./fixtures.ts";

const ROOT = new URL("..", import.meta.url);
const MAIN_LOCAL = new URL("../cli/main.ts", import.meta.url).pathname;
/** Generous: the first run downloads the npm packages into the empty DENO_DIR. */
const RUN_TIMEOUT_MS = 180_000;

/** Serve the checkout's files as raw.githubusercontent.com does: text/plain, no listings. */
function serveCheckout(): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const path = decodeURIComponent(new URL(req.url).pathname);
    if (path.split("/").includes("..")) return new Response("bad path", { status: 400 });
    try {
      const body = await Deno.readFile(new URL(`.${path}`, ROOT));
      return new Response(body, { headers: { "content-type": "text/plain; charset=utf-8" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

/** `cmd args` in `cwd` with `env` added to the environment, output collected. */
async function spawn(
  cmd: string,
  args: string[],
  cwd: string,
  env: Record<string, string>,
): Promise<Ran> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(RUN_TIMEOUT_MS),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `deno args` in `cwd`; with `denoDir`, that cache instead of the usual one. */
function deno(args: string[], cwd: string, denoDir?: string): Promise<Ran> {
  return spawn(Deno.execPath(), args, cwd, denoDir === undefined ? {} : { DENO_DIR: denoDir });
}

function describe(what: string, r: Ran): string {
  return `${what}: exit ${r.code}\n--- stdout\n${r.stdout.slice(-2000)}\n--- stderr\n` +
    r.stderr.slice(-2000);
}

Deno.test("every tool runs from an http URL with an empty DENO_DIR", async (t) => {
  const server = serveCheckout();
  const base = `http://127.0.0.1:${server.addr.port}`;
  const denoDir = await Deno.makeTempDir({ prefix: "lorakit_remote_deno_dir_" });
  const cwd = await Deno.makeTempDir({ prefix: "lorakit_remote_cwd_" });
  try {
    for (const tool of toolNames()) {
      await t.step(`${tool} --help`, async () => {
        const r = await deno(["run", "-A", `${base}/cli/main.ts`, tool, "--help"], cwd, denoDir);
        assert.equal(r.code, 0, describe(`${tool} --help`, r));
        assert(/usage:/i.test(r.stdout), describe(`${tool} --help printed no usage`, r));
      });
    }

    const lora = fixture("kohya/lierla_a.safetensors");
    await t.step({
      name: "check_lora_weights on a LoRA, as from the checkout",
      ignore: lora === null,
      fn: async () => {
        const remote = await deno(
          ["run", "-A", `${base}/cli/main.ts`, "check_lora_weights", lora!],
          cwd,
          denoDir,
        );
        assert.equal(remote.code, 0, describe("remote check_lora_weights", remote));
        assert(
          remote.stdout.startsWith("number of LoRA modules: "),
          describe("remote check_lora_weights", remote),
        );
        const local = await deno(
          ["run", "-A", MAIN_LOCAL, "check_lora_weights", lora!],
          ROOT.pathname,
        );
        assert.equal(local.code, 0, describe("local check_lora_weights", local));
        assert.equal(remote.stdout, local.stdout);
      },
    });

    await t.step("the library and a data loader worker load from the URL", async () => {
      const png = `${cwd}/tiny.png`;
      const data = new Uint8Array(4 * 3 * 3).map((_, i) => (i * 37) & 255);
      await Deno.writeFile(png, await encodePng({ width: 4, height: 3, channels: 3, data }));
      const script = `
        const lib = await import("${base}/mod.ts");
        console.log("exports", Object.keys(lib).length);
        const { DecodePool } = await import("${base}/core/train/worker_pool.ts");
        const pool = new DecodePool(1);
        try {
          await pool.check(${JSON.stringify(png)});
          console.log("decoded on a worker");
        } finally {
          pool.terminate();
        }`;
      const r = await deno(["eval", script], cwd, denoDir);
      assert.equal(r.code, 0, describe("remote library and worker", r));
      assert(/exports [1-9]/.test(r.stdout), describe("mod.ts exported nothing", r));
      assert(r.stdout.includes("decoded on a worker"), describe("worker", r));
    });

    await t.step("deno install -g of the URL gives a working lorakit command", async () => {
      const root = `${cwd}/install`;
      const inst = await deno(
        ["install", "-g", "-A", "-n", "lorakit", "--root", root, `${base}/cli/main.ts`],
        cwd,
        denoDir,
      );
      assert.equal(inst.code, 0, describe("deno install", inst));
      // The installed script calls `deno` from PATH.
      const bin = Deno.execPath().replace(/\/[^/]*$/, "");
      const r = await spawn(`${root}/bin/lorakit`, ["resize_lora", "--help"], cwd, {
        DENO_DIR: denoDir,
        PATH: `${bin}:${Deno.env.get("PATH") ?? ""}`,
      });
      assert.equal(r.code, 0, describe("installed lorakit resize_lora --help", r));
      assert(r.stdout.includes("usage: lorakit resize_lora"), describe("installed lorakit", r));
    });
  } finally {
    await server.shutdown();
    await Deno.remove(denoDir, { recursive: true });
    await Deno.remove(cwd, { recursive: true });
  }
});
