/**
 * The WebGPU engine: device, tensors, autograd and ops. Knows nothing about Stable Diffusion.
 *
 * @module
 */
export { getGpu, type Gpu, NoGpuError } from "./device.ts";
export { initGpu, rt } from "./runtime.ts";
export { type DType, scope, scopeAsync, Tensor } from "./tensor.ts";
export { backward, checkpoint, isGradEnabled, noGrad, releaseGraph } from "./autograd.ts";
export * from "./ops/mod.ts";
export * from "./optim/mod.ts";
export * from "./linalg/mod.ts";
