/**
 * Registry of the engine's differentiable ops (one file per op family).
 *
 * @module
 */
export * from "./elementwise.ts";
export * from "./conv2d.ts";
export * from "./resize_nearest.ts";
export * from "./concat.ts";
export { mean, sum, sumTo } from "./reduce.ts";
export { OpArgumentError } from "./check.ts";
export * from "./norm.ts";
export * from "./shape.ts";
export * from "./attention.ts";
export * from "./softmax.ts";
export * from "./geglu.ts";
export * from "./embedding.ts";
export * from "./loss.ts";
export * from "./linear.ts";
export * from "./resample.ts";
