/**
 * What the training loop needs from its host (the CLI): messages, progress, logs, file removal,
 * interruption and the resume command. Through it the loop stays on web-standard APIs.
 *
 * @module
 */

/** What the loop needs from its host (the CLI). */
export interface TrainIo {
  /** Messages (notes, warnings, summaries). */
  message(text: string): void;
  /** The progress line, rewritten per step. */
  progress?(line: string): void;
  /** One JSONL record per step (`--logging_dir`). */
  log?(record: string): void;
  /** kohya's tracker scalars (tag -> value) at `step` (the epoch number for epoch logs). */
  scalars?(step: number, values: Record<string, number>): void;
  /** Remove a file or folder (old saves beyond `--save_last_n_*`). */
  remove(path: string): Promise<void>;
  /** True once the user asked to stop (SIGINT). */
  interrupted?(): boolean;
  /**
   * Called as soon as an optimizer step is encoded (before its loss is known), with the number of
   * steps done: the moment to sample host-side counters per step.
   */
  stepEncoded?(step: number): void;
  /** The full command line that resumes from the state at `statePath` (for the Ctrl-C message). */
  resumeCommand?(statePath: string): string;
  /** A sample image was written (`--sample_prompts`). */
  sampleWritten?(
    sample: { path: string; prompt: string; step: number; epoch: number | null },
  ): void;
}
