/**
 * A target that fails on purpose, for the harness's own test: by the input's first byte it hangs
 * in a synchronous loop, hangs on a promise that never settles, allocates past its bound (and
 * swallows the refusal), throws a TypeError, rejects with a LorakitError (below 0x80) or accepts.
 * Not run by `deno task fuzz`.
 *
 * @module
 */
import { LorakitError } from "../../../core/errors.ts";
import type { FuzzTarget } from "../target.ts";

/** The first bytes that make a case fail, by how. */
export const SELFTEST = { syncHang: 0xa0, asyncHang: 0xa1, allocation: 0xa2, crash: 0xa3 };

export const target: FuzzTarget = {
  name: "selftest",
  what: "the harness's watchdog, allocation guard and crash reporting",
  boundText: "1 MiB per buffer",
  allocBound: () => 1 << 20,
  seeds: () => Promise.resolve([{ bytes: new Uint8Array([200, 1, 2, 3]) }]),
  structural: [(_seed, r) => new Uint8Array([0xa0 + r.int(8), 1, 2, 3])],
  run(input) {
    const k = input[0] ?? 255;
    if (k === SELFTEST.syncHang) { for (;;) { /* a synchronous hang */ } }
    if (k === SELFTEST.asyncHang) return new Promise(() => {});
    if (k === SELFTEST.allocation) {
      try {
        new Float32Array(1 << 28);
      } catch {
        // A parser that catches everything must not hide the allocation.
      }
    }
    if (k === SELFTEST.crash) throw new TypeError("a crash");
    if (k < 0x80) throw new LorakitError("selftest: rejected");
    return Promise.resolve();
  },
};
