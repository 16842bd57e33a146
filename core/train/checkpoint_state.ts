/**
 * `--save_state` / `--resume`: everything a run needs to continue exactly where it stopped — the
 * LoRA factors in float32 (as trained, not in `--save_precision`), the optimizer's state tensors
 * and step count, the global step, the epoch and how many of its batches were consumed, the
 * fp16 loss scaler, and the seed. The run's randomness is derived from (seed, step) (see
 * train_rng.ts), so no generator state needs saving; the data order is replayed from the seed.
 *
 * kohya saves an accelerate state folder (`<name>-state/`); lorakit keeps that folder name but
 * its content is one file, `lorakit_state.safetensors`, written atomically, so a state is never
 * half-written. kohya's state folders cannot be resumed here, nor lorakit's in kohya.
 *
 * @module
 */
import { type Optimizer, type OptimizerState, Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { exists, isDirectory, joinPath, makeDir } from "../io/fs.ts";
import {
  openSafetensors,
  type SafetensorsFile,
  type TensorToWrite,
  writeSafetensors,
} from "../io/safetensors.ts";
import { overwriteTensor } from "./network_training.ts";

/** The file inside a state folder. */
export const STATE_FILE = "lorakit_state.safetensors";

/** The scalar part of a training state. */
export interface TrainState {
  /** Optimizer steps done (kohya's global_step). */
  step: number;
  /** The epoch in progress when saved (1-based); its first `batchInEpoch` batches are done. */
  epoch: number;
  batchInEpoch: number;
  seed: number;
  /** fp16 loss scaler, when mixed precision fp16 is on. */
  scaler: { scale: number; growthTracker: number } | null;
  /** Free-form settings that must match on resume (network module, dims, ...). */
  fingerprint: string;
}

/** The folder's state file, or the path itself when it is the file. */
export async function stateFilePath(path: string): Promise<string> {
  if (await isDirectory(path)) return joinPath(path, STATE_FILE);
  return path;
}

function asBytes(a: Float32Array | Uint32Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

/** Write a state folder (created if needed); returns the file written. */
export async function saveTrainState(
  folder: string,
  params: readonly Tensor[],
  optimizer: Optimizer,
  state: TrainState,
): Promise<string> {
  await makeDir(folder);
  const tensors: TensorToWrite[] = [];
  const values = await Tensor.readAll(params);
  for (const [i, p] of params.entries()) {
    tensors.push({ name: `param.${i}`, dtype: "F32", shape: p.shape, data: values[i] });
  }
  const opt = await optimizer.exportState();
  const packed: string[] = [];
  opt.params.forEach((s, i) => {
    if (!s) return;
    for (const [name, h] of Object.entries(s)) {
      const key = `opt.${i}.${name}`;
      if (h.dtype === "u32") packed.push(key);
      tensors.push({
        name: key,
        dtype: h.dtype === "u32" ? "I32" : "F32",
        shape: h.shape,
        data: asBytes(h.data),
      });
    }
  });
  const path = joinPath(folder, STATE_FILE);
  await writeSafetensors(path, tensors, {
    lorakit_state: JSON.stringify({
      version: 1,
      ...state,
      optimizer: { type: opt.type, step: opt.step, count: opt.params.length, packed },
      params: params.map((p) => p.shape),
    }),
  });
  return path;
}

/**
 * The seed a state was saved with, read before anything is built: `--resume` without `--seed`
 * continues with it, so the same command line resumes exactly.
 */
export async function readStateSeed(path: string): Promise<number> {
  return await withStateFile(path, (_f, raw, file) => {
    let seed: unknown;
    try {
      seed = (JSON.parse(raw) as { seed?: unknown }).seed;
    } catch (e) {
      throw new LorakitError(`--resume ${file}: ${(e as Error).message}`);
    }
    if (typeof seed !== "number" || !Number.isInteger(seed)) {
      throw new LorakitError(`--resume ${file}: the state records no seed`);
    }
    return Promise.resolve(seed);
  });
}

/** Open the state file of a `--resume` path and read it with its lorakit metadata text. */
async function withStateFile<T>(
  path: string,
  read: (f: SafetensorsFile, raw: string, file: string) => Promise<T>,
): Promise<T> {
  const file = await stateFilePath(path);
  if (!(await exists(file))) {
    throw new LorakitError(
      `--resume ${path}: no ${STATE_FILE} found (lorakit resumes only states it saved with ` +
        `--save_state; kohya's accelerate state folders cannot be read)`,
    );
  }
  const f = await openSafetensors(file);
  try {
    const raw = f.metadata.lorakit_state;
    if (raw === undefined) throw new LorakitError(`--resume ${file}: not a lorakit state file`);
    return await read(f, raw, file);
  } finally {
    f.close();
  }
}

/**
 * Read a state (folder or file) into the network's parameters and the optimizer; returns the
 * scalar state. A state of another network, optimizer or fingerprint is an error naming the
 * difference.
 */
export async function loadTrainState(
  path: string,
  params: readonly Tensor[],
  optimizer: Optimizer,
  fingerprint: string,
): Promise<TrainState> {
  return await withStateFile(path, async (f, raw, file) => {
    const s = JSON.parse(raw) as TrainState & {
      optimizer: { type: string; step: number; count: number; packed: string[] };
      params: number[][];
    };
    if (s.fingerprint !== fingerprint) {
      throw new LorakitError(
        `--resume ${file}: the state was saved with other network settings ` +
          `(${s.fingerprint}); this run has ${fingerprint}`,
      );
    }
    if (s.params.length !== params.length) {
      throw new LorakitError(
        `--resume ${file}: the state has ${s.params.length} parameters, the network has ` +
          `${params.length}`,
      );
    }
    for (const [i, p] of params.entries()) {
      const t = await f.readF32(`param.${i}`);
      if (t.shape.join() !== p.shape.join()) {
        throw new LorakitError(
          `--resume ${file}: param.${i} is [${t.shape}], the network's is [${p.shape}]`,
        );
      }
      overwriteTensor(p, t.data);
    }
    const packed = new Set(s.optimizer.packed);
    const opt: OptimizerState = { type: s.optimizer.type, step: s.optimizer.step, params: [] };
    for (let i = 0; i < s.optimizer.count; i++) {
      const prefix = `opt.${i}.`;
      const entries = f.header.tensors.filter((t) => t.name.startsWith(prefix));
      if (entries.length === 0) {
        opt.params.push(null);
        continue;
      }
      const rec: NonNullable<OptimizerState["params"][number]> = {};
      for (const e of entries) {
        const bytes = await f.readRaw(e.name);
        const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
        rec[e.name.slice(prefix.length)] = packed.has(e.name)
          ? { shape: e.shape, dtype: "u32", data: new Uint32Array(buf) }
          : { shape: e.shape, dtype: "f32", data: new Float32Array(buf) };
      }
      opt.params.push(rec);
    }
    try {
      optimizer.importState(opt);
    } catch (e) {
      throw new LorakitError(`--resume ${file}: ${(e as Error).message}`);
    }
    return {
      step: s.step,
      epoch: s.epoch,
      batchInEpoch: s.batchInEpoch,
      seed: s.seed,
      scaler: s.scaler,
      fingerprint: s.fingerprint,
    };
  });
}
