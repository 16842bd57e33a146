/**
 * Optimizers that run on the GPU, gradient clipping, dynamic loss scaling, and a factory that
 * builds one from a typed description.
 *
 * @module
 */
export { adamKernel, type AdamStep, AdamW, type AdamWOptions, type ParamGroup } from "./adamw.ts";
export { AdamW8bit, adamw8bitMaps, type AdamW8bitOptions } from "./adamw8bit.ts";
export { Lion, type LionOptions } from "./lion.ts";
export { SGDNesterov, type SGDOptions } from "./sgd.ts";
export { Adafactor, type AdafactorOptions } from "./adafactor.ts";
export { clipGradNorm, GradNorm } from "./clip.ts";
export { LossScaler, type LossScalerOptions, type ScaledStep } from "./loss_scaler.ts";
export {
  type HostArray,
  type Optimizer,
  OptimizerError,
  type OptimizerState,
  StatefulOptimizer,
  type UpdateOptions,
} from "./common.ts";
export { createOptimizer, type OptimizerSpec, type OptimizerType } from "./factory.ts";
export { createDynamicMap, quantizeCode } from "./qmap.ts";
