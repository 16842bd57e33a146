/**
 * Optimizers that run on the GPU.
 *
 * @module
 */
export { AdamW, type AdamWOptions, type ParamGroup } from "./adamw.ts";
