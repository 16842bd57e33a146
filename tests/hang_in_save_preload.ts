/**
 * Preloaded into a train_network process by tests/train_kill_resume_test.ts: the
 * `LORAKIT_HANG_AT_SYNC`-th file sync (every atomic save syncs its temporary file once, before
 * the rename) creates the file `LORAKIT_HANG_MARK` and then never returns, so the test can kill
 * the process in the middle of a save, with the temporary file written and not yet renamed.
 */
const at = Number(Deno.env.get("LORAKIT_HANG_AT_SYNC") ?? "0");
const mark = Deno.env.get("LORAKIT_HANG_MARK");
if (at > 0 && mark) {
  let syncs = 0;
  const original = Deno.FsFile.prototype.syncData;
  Deno.FsFile.prototype.syncData = async function (this: Deno.FsFile): Promise<void> {
    if (++syncs === at) {
      await Deno.writeTextFile(mark, String(syncs));
      // A timer keeps the event loop alive; a bare pending promise would let the process end.
      await new Promise(() => setInterval(() => {}, 1000));
    }
    return await original.call(this);
  };
}
