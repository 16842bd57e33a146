/**
 * Module-level pipelining for the LoRA tools. Each module's SVD waits on several GPU read-backs
 * (about 10 ms each on a software adapter, more than the work itself for small layers), so a few
 * modules are kept in flight at once: while one waits for its read-back the others encode work.
 * The GPU runtime keeps one queue, so their dispatches simply interleave in submission order.
 *
 * @module
 */

/** How many modules the tools keep in flight. */
export const MODULES_IN_FLIGHT = 4;

/**
 * `fn` over `items` with at most `limit` calls pending at once; results in input order. The
 * first rejection stops new calls and is rethrown once the pending ones have settled.
 */
export async function mapInFlight<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: { error: unknown } | null = null;
  const worker = async () => {
    while (failed === null && next < items.length) {
      const i = next++;
      try {
        out[i] = await fn(items[i], i);
      } catch (e) {
        failed ??= { error: e };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (failed !== null) throw (failed as { error: unknown }).error;
  return out;
}
