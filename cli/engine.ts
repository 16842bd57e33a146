/**
 * `lorakit engine`: prints the WebGPU adapter, checks a few ops against the CPU, and times a
 * matrix product — a one-command way to see the engine working on this machine.
 *
 * @module
 */
import { getGpu, initGpu, rt, Tensor } from "../gpu/mod.ts";
import * as ops from "../gpu/ops/mod.ts";

/** Run the engine self-check; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    console.log("usage: lorakit engine\n\nShows the adapter, runs a short self-check and timing.");
    return 0;
  }
  const gpu = await getGpu();
  await initGpu();
  console.log(`adapter: ${gpu.description}${gpu.isSoftware ? " (software)" : ""}`);
  console.log(`shader-f16: ${gpu.hasF16 ? "yes" : "no"}`);
  console.log(
    `limits: max buffer ${(gpu.limits.maxBufferSize / 2 ** 20).toFixed(0)} MiB, ` +
      `max storage binding ${(gpu.limits.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB, ` +
      `workgroup storage ${gpu.limits.maxComputeWorkgroupStorageSize / 1024} KiB`,
  );
  // Self-check: silu(a + b) against the CPU.
  const n = 4096;
  const a = new Float32Array(n).map((_, i) => Math.sin(i));
  const b = new Float32Array(n).map((_, i) => Math.cos(i * 0.5));
  const ta = Tensor.fromArray(a, [n]), tb = Tensor.fromArray(b, [n]);
  const y = await ops.silu(ops.add(ta, tb)).toArray();
  let err = 0;
  for (let i = 0; i < n; i++) {
    const s = a[i] + b[i];
    err = Math.max(err, Math.abs(y[i] - s / (1 + Math.exp(-s))));
  }
  console.log(
    `self-check silu(a+b): max error ${err.toExponential(2)} ${err < 1e-5 ? "ok" : "FAIL"}`,
  );
  const mm = (ops as Record<string, unknown>).matmul as
    | ((x: Tensor, w: Tensor) => Tensor)
    | undefined;
  if (mm) {
    const size = gpu.isSoftware ? 512 : 2048;
    const x = Tensor.fromArray(new Float32Array(size * size).fill(0.5), [size, size]);
    const w = Tensor.fromArray(new Float32Array(size * size).fill(0.25), [size, size]);
    mm(x, w).dispose();
    await rt().sync();
    const t0 = performance.now();
    const out = mm(x, w);
    await rt().sync();
    const s = (performance.now() - t0) / 1000;
    const v = (await out.toArray())[0];
    console.log(
      `matmul ${size}x${size}: ${(2 * size ** 3 / s / 1e9).toFixed(2)} GFLOP/s ` +
        `(check ${v === size * 0.125 ? "ok" : "FAIL " + v})`,
    );
  }
  const st = rt().storage.stats();
  console.log(`pool: ${st.liveBuffers} live buffers, peak ${(st.peakBytes / 1024).toFixed(0)} KiB`);
  return err < 1e-5 ? 0 : 1;
}
