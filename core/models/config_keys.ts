/**
 * The tensors an `SDConfig` implies, re-exported from `core/model_config/keys.ts` (where they are
 * declared, below both `core/io` and `core/models`) for the code that imports them from here.
 *
 * @module
 */
export { type ExpectedTensor, expectedTensors } from "../model_config/keys.ts";
