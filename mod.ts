/**
 * lorakit: LoRA for Stable Diffusion 1.x/2.x on WebGPU.
 *
 * The public library API. The engine (tensors, ops, autograd) is re-exported here; the Stable
 * Diffusion and LoRA layers join it as they land.
 *
 * ```ts
 * import { initGpu, Tensor, silu } from "@lorakit/lorakit";
 * await initGpu();
 * const y = silu(Tensor.fromArray(new Float32Array([1, 2, 3]), [3]));
 * console.log(await y.toArray());
 * ```
 *
 * @module
 */
export * from "./gpu/mod.ts";
export { LorakitError } from "./core/errors.ts";
