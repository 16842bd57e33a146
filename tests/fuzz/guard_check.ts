/**
 * Run alone (`deno run tests/fuzz/guard_check.ts`), by the harness's test: installs the
 * allocation guard in this process and prints, as JSON, what the wrapped constructors do.
 *
 * @module
 */
import { AllocationBoundError, installAllocGuard } from "./alloc_guard.ts";

const OrigU8 = Uint8Array;
const guard = installAllocGuard();
const out: Record<string, unknown> = {};
const big = new ArrayBuffer(4096);
guard.arm(1024);
const a = new Uint8Array(16);
const f = Float32Array.from([1, 2, 3]);
class Sub extends Uint8Array {}
out.instanceof = a instanceof Uint8Array && a instanceof OrigU8 && f instanceof Float32Array &&
  new Sub(4) instanceof Uint8Array && new ArrayBuffer(8) instanceof ArrayBuffer &&
  new DataView(new ArrayBuffer(8)).byteLength === 8;
out.constructorIdentity = a.constructor === OrigU8 && Object.getPrototypeOf(a) === OrigU8.prototype;
out.viewOfBuffer = new Uint16Array(big).length === 2048; // a view allocates nothing
out.largestSoFar = guard.largest;
try {
  new Float64Array(1000);
  out.overBound = "allowed";
} catch (e) {
  out.overBound = e instanceof AllocationBoundError ? "refused" : String(e);
}
try {
  Array.from({ length: 1 << 20 });
} catch {
  // swallowed, as a parser might
}
out.violation = guard.violation;
guard.disarm();
out.unarmed = new Uint8Array(1 << 20).length === 1 << 20;
guard.arm(1 << 20);
out.reset = guard.violation === null && guard.largest === 0;
guard.disarm();
console.log(JSON.stringify(out));
