/**
 * What train_network writes during a run, named and pruned as kohya does: LoRA files every
 * `--save_every_n_epochs` (`<name>-000001.safetensors`, default name `epoch`) and
 * `--save_every_n_steps` (`<name>-step00000010.safetensors`, default `at`), the final
 * `<name>.safetensors` (default `last`), with the extension `--save_model_as` names (`.ckpt`
 * and `.pt` are torch.save checkpoints without metadata), `--save_state` folders beside each save (and
 * `<name>-state` at the end with `--save_state_on_train_end`), the removal of saves beyond
 * `--save_last_n_epochs` / `--save_last_n_steps` (and their `_state` variants), and the sample
 * images. Every file is written to a temporary name and renamed.
 *
 * @module
 */
import { rt } from "../../gpu/mod.ts";
import type { LossScaler } from "../../gpu/mod.ts";
import { joinPath, makeDir } from "../io/fs.ts";
import { saveTrainState } from "./checkpoint_state.ts";
import type { TrainIo } from "./train_io.ts";
import type { TrainPlan } from "../kohya/plan_types.ts";
import { type RunFacts, runMetadata, saveMetadata } from "./train_metadata.ts";
import { sampleImages } from "./train_samples.ts";
import type { Schedule, SessionModel, SessionNetwork } from "./train_session.ts";
import type { PreparedData } from "./train_setup.ts";

/** Where the run is when something is saved. */
export interface SaveContext {
  /** Optimizer steps done. */
  step: number;
  /** The epoch to continue with and how many of its batches are done. */
  epoch: number;
  batchInEpoch: number;
  scaler: LossScaler | null;
}

/** Everything a {@link Saver} needs. */
export interface SaverOptions {
  plan: TrainPlan;
  io: TrainIo;
  data: PreparedData;
  model: SessionModel;
  session: SessionNetwork;
  seed: number;
  schedule: Schedule;
  /** Seconds since the epoch. */
  startedAt: number;
  fingerprint: string;
}

const pad = (n: number, w: number) => String(n).padStart(w, "0");

/** Saves, states, pruning and samples of one run. */
export class Saver {
  /** Every file or folder written, in order. */
  readonly files: string[] = [];
  readonly #o: SaverOptions;
  readonly #run: Record<string, string>;
  readonly #dir: string;
  readonly #maxBucket: [number, number];
  readonly #everyEpochs: number | null;
  /** `.safetensors`, `.ckpt` or `.pt`, from `--save_model_as`. */
  readonly #ext: string;

  constructor(o: SaverOptions) {
    this.#o = o;
    const a = o.plan.saving;
    this.#dir = a.outputDir;
    this.#ext = `.${a.format}`;
    const { optimizerChoice: created, net } = o.session;
    const facts: RunFacts = {
      sessionId: Math.floor(Math.random() * 2 ** 31),
      startedAt: o.startedAt,
      seed: o.seed,
      numBatchesPerEpoch: o.schedule.batchesPerEpoch,
      numEpochs: o.schedule.numEpochs,
      maxTrainSteps: o.schedule.maxTrainSteps,
      lrWarmupSteps: o.schedule.warmupSteps,
      optimizer: created.name + (created.argsText ? `(${created.argsText})` : ""),
      networkArgs: Object.keys(net.networkArgs).length > 0 ? net.networkArgs : null,
      modelHash: o.model.modelHash,
      vaeHash: o.model.vaeHash,
    };
    this.#run = runMetadata(o.plan.metadata, o.data, facts);
    const reso = o.data.datasets[0].blueprint.params.resolution ?? [512, 512];
    this.#maxBucket = [reso[0], reso[1]];
    this.#everyEpochs = a.nEpochRatio !== null
      ? Math.max(1, Math.floor(o.schedule.numEpochs / a.nEpochRatio))
      : a.everyNEpochs;
  }

  /** The LoRA file for a name (without extension). */
  async #saveLora(name: string, step: number, epoch: number): Promise<void> {
    await makeDir(this.#dir);
    const path = joinPath(this.#dir, `${name}${this.#ext}`);
    const md = saveMetadata(this.#run, this.#o.plan.metadata, {
      step,
      epoch,
      now: Date.now() / 1000,
      maxBucket: this.#maxBucket,
    });
    await this.#o.session.net.save(path, md, this.#o.plan.saving.precision);
    this.files.push(path);
    this.#o.io.message(`saved ${path}`);
  }

  async #saveState(folder: string, c: SaveContext): Promise<string> {
    const { session, seed, fingerprint } = this.#o;
    // The scaler's outcomes arrive a step late; the state needs them all (its scale, and the
    // optimizer's step count without the skipped steps).
    await c.scaler?.settle();
    const path = joinPath(this.#dir, folder);
    await saveTrainState(path, session.params, session.optimizer, {
      step: c.step,
      epoch: c.epoch,
      batchInEpoch: c.batchInEpoch,
      seed,
      scaler: c.scaler ? { scale: c.scaler.scale, growthTracker: c.scaler.growthTracker } : null,
      fingerprint,
    });
    this.files.push(path);
    this.#o.io.message(`saved state ${path}`);
    return path;
  }

  async #remove(name: string): Promise<void> {
    const path = joinPath(this.#dir, name);
    await this.#o.io.remove(path);
  }

  /** After each optimizer step: step saves, step states, step samples. */
  async afterStep(c: SaveContext): Promise<void> {
    const a = this.#o.plan.saving;
    const n = a.everyNSteps;
    if (n !== null && n > 0 && c.step % n === 0) {
      const name = a.outputName ?? "at";
      await this.#saveLora(`${name}-step${pad(c.step, 8)}`, c.step, c.epoch);
      const removeNo = (last: number | null) => {
        if (last === null) return null;
        const r = c.step - last - 1;
        const k = r - (r % n);
        return k < 0 ? null : k;
      };
      const rm = removeNo(a.lastNSteps);
      if (rm !== null && rm > 0) await this.#remove(`${name}-step${pad(rm, 8)}${this.#ext}`);
      if (a.state) {
        await this.#saveState(`${name}-step${pad(c.step, 8)}-state`, c);
        const rs = removeNo(a.lastNStepsState ?? a.lastNSteps);
        if (rs !== null && rs > 0) await this.#remove(`${name}-step${pad(rs, 8)}-state`);
      }
    }
    const ns = this.#o.plan.sampling.everyNSteps;
    if (ns !== null && c.step % ns === 0) await this.sample(c.step, null);
  }

  /** At the end of epoch `epoch` (1-based): epoch saves, states, samples. */
  async afterEpoch(c: SaveContext, epoch: number): Promise<void> {
    const a = this.#o.plan.saving;
    const every = this.#everyEpochs;
    if (every !== null && every > 0 && epoch % every === 0 && epoch < this.#o.schedule.numEpochs) {
      const name = a.outputName ?? "epoch";
      await this.#saveLora(`${name}-${pad(epoch, 6)}`, c.step, epoch);
      if (a.lastNEpochs !== null) {
        const rm = epoch - every * a.lastNEpochs;
        if (rm > 0) await this.#remove(`${name}-${pad(rm, 6)}${this.#ext}`);
      }
      if (a.state) {
        await this.#saveState(`${name}-${pad(epoch, 6)}-state`, c);
        const last = a.lastNEpochsState ?? a.lastNEpochs;
        if (last !== null) {
          const rm = epoch - every * last;
          if (rm > 0) await this.#remove(`${name}-${pad(rm, 6)}-state`);
        }
      }
    }
    const ne = this.#o.plan.sampling.everyNEpochs;
    if (ne !== null && epoch % ne === 0) await this.sample(c.step, epoch);
  }

  /** After the last step: the final file and, with --save_state(_on_train_end), the state. */
  async atEnd(c: SaveContext): Promise<void> {
    const a = this.#o.plan.saving;
    const name = a.outputName ?? "last";
    await this.#saveLora(name, c.step, this.#o.schedule.numEpochs);
    if (a.state || a.stateOnTrainEnd) await this.#saveState(`${name}-state`, c);
  }

  /** Ctrl-C: with --save_state, a state to resume from; nothing else is written. */
  async onInterrupt(c: SaveContext): Promise<void> {
    const a = this.#o.plan.saving;
    if (!a.state) {
      this.#o.io.message("interrupted: no state saved (pass --save_state to save one)");
      return;
    }
    const path = await this.#saveState(`${a.outputName ?? "at"}-step${pad(c.step, 8)}-state`, c);
    const command = this.#o.io.resumeCommand?.(path);
    this.#o.io.message(
      command
        ? `interrupted at step ${c.step}; to continue, run:\n  ${command}`
        : `interrupted at step ${c.step}; to continue, run the same command with --resume ${path}`,
    );
  }

  /** Sample images now (when `--sample_prompts` is set). */
  async sample(step: number, epoch: number | null): Promise<void> {
    const { sampling, saving, model } = this.#o.plan;
    if (sampling.prompts === null) return;
    const files = await sampleImages(this.#o.model.sd, this.#o.session.net, {
      prompts: sampling.prompts,
      sampler: sampling.sampler,
      outputDir: this.#dir,
      outputName: saving.outputName,
      clipSkip: model.clipSkip,
      vParameterization: model.vParameterization,
      seed: this.#o.seed,
      vae: this.#o.model.decoder,
      latentScale: this.#o.model.latentScale,
    }, {
      step,
      epoch,
      onWritten: (path, prompt) => this.#o.io.sampleWritten?.({ path, prompt, step, epoch }),
    });
    await rt().sync();
    this.files.push(...files);
  }
}
