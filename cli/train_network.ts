/**
 * `lorakit train_network ...`: kohya's `train_network.py` command line (and `--config_file`
 * TOML) for SD 1.x/2.x LoRA training. Progress goes to stderr (one rewritten line on a terminal),
 * `--logging_dir` gets TensorBoard event files (kohya's tags and folders) and a JSONL log of every
 * step, Ctrl-C stops after the current step (saving a
 * state with `--save_state`), and a summary ends the run. `--output_config` writes the arguments
 * to `--config_file` and exits without training.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { trainNetwork } from "../core/train/loop.ts";
import { checkTrainOutputs, logFolder } from "../core/train/output_checks.ts";
import { outputConfigTarget, writeOutputConfig } from "../core/kohya/output_config.ts";
import { summaryText } from "../core/train/progress.ts";
import { tensorboardFolder } from "../core/train/tensorboard.ts";
import { EventFileWriter } from "./tensorboard_log.ts";
import {
  HelpRequested,
  parseTrainArgs,
  type TrainArgs,
  type TrainTool,
} from "../core/kohya/train_args.ts";
import { planTrainRun } from "../core/kohya/plan.ts";
import { resumeCommand } from "./resume_command.ts";
import { startDashboard } from "./train_dashboard.ts";

const enc = new TextEncoder();

function stamp(): string {
  const d = new Date();
  const two = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}${two(d.getMonth() + 1)}${two(d.getDate())}${two(d.getHours())}` +
    `${two(d.getMinutes())}${two(d.getSeconds())}`;
}

/** Open the JSONL log of `--logging_dir` (`<dir>/<log_prefix><timestamp>.jsonl`). */
function openLog(
  args: TrainArgs,
  at: string,
): { path: string; write: (line: string) => void; close: () => void } | null {
  if (args.logging_dir === null) return null;
  const path = `${args.logging_dir}/${args.log_prefix ?? ""}${at}.jsonl`;
  let file: Deno.FsFile;
  try {
    Deno.mkdirSync(logFolder(args.logging_dir, args.log_prefix), { recursive: true });
    file = Deno.openSync(path, { write: true, create: true, append: true });
  } catch (e) {
    throw new LorakitError(`--logging_dir: cannot write ${path} (${(e as Error).message})`);
  }
  return {
    path,
    write: (line) => {
      file.writeSync(enc.encode(line + "\n"));
    },
    close: () => file.close(),
  };
}

/**
 * Open the TensorBoard event file of `--logging_dir` in the folder kohya's tracker uses; none
 * with `--log_with wandb`, which asks for W&B alone.
 */
function openEvents(args: TrainArgs, at: string): EventFileWriter | null {
  if (args.log_with === "wandb" || args.log_with === "all") {
    onNote(`--log_with ${args.log_with}: lorakit writes no W&B logs`);
  }
  if (args.logging_dir === null || args.log_with === "wandb") return null;
  return EventFileWriter.open(
    tensorboardFolder(args.logging_dir, args.log_prefix, at, args.log_tracker_name),
  );
}

const noted = new Set<string>();

/** Notes about accepted no-op flags, once each. */
function onNote(note: string): void {
  if (noted.has(note)) return;
  noted.add(note);
  console.warn(`note: ${note}`);
}

/** sdxl_train_network's entry point: train_network's, on an SDXL model with SDXL's flags. */
export function sdxlMain(argv: string[]): Promise<number> {
  return main(argv, "sdxl_train_network");
}

/** Entry point; returns the exit code (0 done, 1 bad input, 130 interrupted). */
export async function main(argv: string[], tool: TrainTool = "train_network"): Promise<number> {
  let args: TrainArgs;
  try {
    const configOut = outputConfigTarget(argv, tool);
    if (configOut !== null) {
      await writeOutputConfig(argv, configOut, { onNote, tool });
      console.error(`saved the arguments to ${configOut}`);
      return 0;
    }
    args = await parseTrainArgs(argv, { onNote, tool });
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(e.text);
      return 0;
    }
    throw e;
  }
  const tty = Deno.stderr.isTerminal();
  let stop = false;
  const onSigint = () => {
    if (stop) Deno.exit(130);
    stop = true;
    Deno.stderr.writeSync(enc.encode("\nstopping after this step (Ctrl-C again to abort)\n"));
  };
  const plan = planTrainRun(args, tool);
  // Checked here too (the loop checks again), so that no log is created before a failing check.
  await checkTrainOutputs(plan);
  Deno.addSignalListener("SIGINT", onSigint);
  const startedAt = stamp();
  const log = openLog(args, startedAt);
  const events = openEvents(args, startedAt);
  const dash = await startDashboard(args, log?.path ?? null);
  let lastWasProgress = false;
  try {
    const result = await trainNetwork(plan, {
      message: (text) => {
        if (lastWasProgress && tty) Deno.stderr.writeSync(enc.encode("\n"));
        lastWasProgress = false;
        console.error(text);
      },
      progress: (line) => {
        Deno.stderr.writeSync(enc.encode(tty ? `\r\x1b[K${line}` : `${line}\n`));
        lastWasProgress = true;
      },
      log: (line) => {
        log?.write(line);
        dash?.record(line);
      },
      sampleWritten: dash?.sample,
      remove: async (path) => {
        try {
          await Deno.remove(path, { recursive: true });
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) {
            throw new LorakitError(`${path}: cannot remove an old save (${(e as Error).message})`);
          }
        }
      },
      interrupted: () => stop,
      resumeCommand: (state) => resumeCommand(tool, argv, state),
      scalars: events ? (step, values) => events.addScalars(step, values) : undefined,
    });
    if (lastWasProgress && tty) Deno.stderr.writeSync(enc.encode("\n"));
    const files = [...result.summary.files, ...[log?.path ?? [], events?.path ?? []].flat()];
    console.error(summaryText({ ...result.summary, files }));
    dash?.finish(
      result.interrupted ? "interrupted" : "finished",
      result.interrupted ? "resume it with --resume and the state it saved" : "",
    );
    return result.interrupted ? 130 : 0;
  } catch (e) {
    dash?.finish("failed", (e as Error).message ?? String(e));
    throw e;
  } finally {
    await dash?.close();
    log?.close();
    events?.close();
    Deno.removeSignalListener("SIGINT", onSigint);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
