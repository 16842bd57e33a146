/**
 * Square matmul at 1024 and 2048, f32 and f16, with the register-tile variants of the GEMM kernel
 * side by side (the default is the winner of these rows on lavapipe), the transposed reads, and
 * PyTorch's CPU matmul measured in the same run. PyTorch 1.13 has no f16 matmul on the CPU, so
 * the f16 rows compare with its f32 time; numpy's f32 time is in the notes.
 *
 *   deno run -A bench/matmul.ts [--quick]
 *
 * @module
 */
import { type DType, initGpu, Tensor } from "../gpu/mod.ts";
import { DEFAULT_TILE, type GemmTile, matmulRaw } from "../gpu/ops/matmul.ts";
import { type BenchRow, peerLabel, randomSigned, runPeer, table, timeGpu } from "./harness.ts";

/** Variants compared at 1024 (rows x columns per invocation, workgroup x by y). */
const VARIANTS: GemmTile[] = [
  { tm: 4, tn: 4, wx: 8, wy: 8 },
  { tm: 8, tn: 8, wx: 8, wy: 4 },
  { tm: 8, tn: 8, wx: 8, wy: 8 },
  { tm: 12, tn: 8, wx: 8, wy: 4 },
  { tm: 8, tn: 16, wx: 8, wy: 4 },
  { tm: 16, tn: 8, wx: 8, wy: 4 },
  { tm: 12, tn: 12, wx: 8, wy: 4 },
  { tm: 16, tn: 16, wx: 8, wy: 4 },
];

const tileName = (t: GemmTile) => `${t.tm}x${t.tn} wg ${t.wx}x${t.wy}`;
const isDefault = (t: GemmTile, d: DType) => tileName(t) === tileName(DEFAULT_TILE[d]);

/** Every row, with the PyTorch ratio. */
export async function bench(): Promise<BenchRow[]> {
  const gpu = await initGpu();
  const quick = Deno.args.includes("--quick");
  const sizes = quick ? [1024] : [1024, 2048];
  // The peer runs before and after our rows and keeps its faster time: on a shared CI machine the
  // load drifts, and this way a quiet spell never favours only one side.
  const before = await runPeer("matmul.py", { sizes, iters: 3 });
  const rows: BenchRow[] = [];
  const ours: { n: number; dtype: DType; row: BenchRow }[] = [];
  const dtypes = gpu.gpu.hasF16 ? ["f32", "f16"] as const : ["f32"] as const;
  for (const n of sizes) {
    const flops = 2 * n ** 3;
    for (const dtype of dtypes) {
      const a = Tensor.fromArray(randomSigned(n * n), [n, n], dtype);
      const b = Tensor.fromArray(randomSigned(n * n), [n, n], dtype);
      // Variants at 1024 only (2048 runs the default); f16 compares the bigger tiles.
      const tiles = n !== 1024
        ? [DEFAULT_TILE[dtype]]
        : dtype === "f32"
        ? VARIANTS
        : VARIANTS.filter((t) => t.tm * t.tn >= 128);
      for (const tile of tiles) {
        const s = await timeGpu(() => matmulRaw(a, b, { tile }).dispose(), { iters: 3 });
        const note = isDefault(tile, dtype) ? "default" : "";
        ours.push({
          n,
          dtype,
          row: { name: `matmul ${n} ${dtype} ${tileName(tile)}`, seconds: s, flops, note },
        });
      }
      if (n === 1024 && dtype === "f32") {
        for (const [tA, tB] of [[false, true], [true, false]]) {
          const s = await timeGpu(
            () => matmulRaw(a, b, { transA: tA, transB: tB }).dispose(),
            { iters: 3 },
          );
          const name = `matmul ${n} ${dtype} ${tA ? "A" : "B"} transposed`;
          ours.push({ n, dtype, row: { name, seconds: s, flops, note: "" } });
        }
      }
      a.dispose();
      b.dispose();
    }
  }
  const after = await runPeer("matmul.py", { sizes, iters: 3 });
  const peer = after ?? before;
  const peerName = peerLabel(peer);
  const best = (key: string, n: number) => {
    const xs = [before, after].map((p) => (p?.[key] as Record<string, unknown> | undefined)?.[n]);
    const ts = xs.filter((x): x is number => typeof x === "number");
    return ts.length ? Math.min(...ts) : undefined;
  };
  const f16Note = (n: number) => {
    const v = (peer?.f16 as Record<string, number | string> | undefined)?.[n];
    return typeof v === "string" ? `torch f16: ${v}` : v ? `torch f16 ${v.toFixed(3)} s` : "";
  };
  for (const { n, dtype, row } of ours) {
    const np = best("numpy", n);
    const notes = [row.note ?? ""];
    if (dtype === "f32" && np) notes.push(`numpy ${(2 * n ** 3 / np / 1e9).toFixed(1)} GFLOP/s`);
    if (dtype === "f16") notes.push(f16Note(n));
    rows.push({
      ...row,
      peer: peerName,
      peerSeconds: best("f32", n),
      note: notes.filter((x) => x).join("; "),
    });
  }
  return rows;
}

if (import.meta.main) console.log(table(await bench()));
