/**
 * A data loader worker (`--max_data_loader_n_workers`): a Web Worker that runs
 * {@link runImageJob} for each {@link ImageJobRequest} it receives and posts back the pixels
 * (transferred, not copied) or the error; a `check` request only decodes the file (the dataset
 * scan's verification). A LorakitError (a corrupt or missing image) comes back
 * as a user error, so the loader reports and skips the image as it does in-process; anything else
 * comes back with its stack and stops training.
 *
 * Started by worker_pool.ts's `DecodePool`; not meant to be imported.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { readImage } from "../image/decode.ts";
import { runImageJob } from "./image_job.ts";
import type { ImageJobReply, ImageJobRequest } from "./worker_pool.ts";

/** The parts of a dedicated worker's global scope this worker uses. */
interface WorkerScope {
  onmessage: ((event: MessageEvent<ImageJobRequest>) => void) | null;
  postMessage(message: ImageJobReply, transfer?: Transferable[]): void;
}

const scope = self as unknown as WorkerScope;

async function handle(request: ImageJobRequest): Promise<void> {
  try {
    if ("check" in request) {
      await readImage(request.check, { applyOrientation: false });
      scope.postMessage({ id: request.id, ok: true, pixels: new Float32Array(0) });
      return;
    }
    const pixels = await runImageJob(request.job);
    scope.postMessage({ id: request.id, ok: true, pixels }, [pixels.buffer]);
  } catch (e) {
    const userError = e instanceof LorakitError;
    const message = userError
      ? e.message
      : e instanceof Error
      ? (e.stack ?? `${e.name}: ${e.message}`)
      : String(e);
    scope.postMessage({ id: request.id, ok: false, userError, message });
  }
}

scope.onmessage = (event) => {
  void handle(event.data);
};
