/**
 * train_network's TensorBoard event file (`--logging_dir`): created in kohya's tracker folder and
 * appended to as scalars come, each call with one unbuffered write, so a run killed at any moment
 * leaves every complete record readable (TensorBoard stops quietly at a truncated last record).
 * The bytes come from core/train/tensorboard.ts.
 *
 * @module
 */
import { LorakitError } from "../core/errors.ts";
import { eventFileName, fileVersionRecord, scalarRecords } from "../core/train/tensorboard.ts";

/** torch numbers the event files a process opens from 0 (the last part of the name). */
let filesOpened = 0;

/** An open event file; scalars are appended as they come. */
export class EventFileWriter {
  private constructor(readonly path: string, private file: Deno.FsFile) {}

  /** Create the folder and a new event file in it, and write the file version event. */
  static open(dir: string, flag = "--logging_dir"): EventFileWriter {
    const now = Date.now() / 1000;
    const path = `${dir}/${eventFileName(now, Deno.hostname(), Deno.pid, filesOpened++)}`;
    let file: Deno.FsFile;
    try {
      Deno.mkdirSync(dir, { recursive: true });
      file = Deno.openSync(path, { write: true, createNew: true });
    } catch (e) {
      throw new LorakitError(`${flag}: cannot write ${path} (${(e as Error).message})`);
    }
    const w = new EventFileWriter(path, file);
    w.write(fileVersionRecord(now));
    return w;
  }

  /** Append one event per value (in the object's order), all at `step`. */
  addScalars(step: number, values: Record<string, number>, wallTime = Date.now() / 1000): void {
    this.write(scalarRecords(step, values, wallTime));
  }

  private write(buf: Uint8Array): void {
    for (let done = 0; done < buf.length;) done += this.file.writeSync(buf.subarray(done));
  }

  close(): void {
    this.file.close();
  }
}
