/**
 * The model configs, re-exported from `core/model_config/` (where they are declared, below both
 * `core/io` and `core/models`) for the code that imports them from here.
 *
 * @module
 */
export type {
  DownBlockType,
  SDConfig,
  TextEncoderConfig,
  UNetConfig,
  UpBlockType,
  VAEConfig,
} from "../model_config/config.ts";
export { type ConfigHints, inferConfig } from "../model_config/infer.ts";
