/**
 * The Stable Diffusion models: CLIP text encoder, U-Net and VAE on the engine, their configs, and
 * the loader that builds all three from a checkpoint.
 *
 * @module
 */
export type { SDConfig, TextEncoderConfig, UNetConfig, VAEConfig } from "../model_config/config.ts";
export { type ClipForwardOptions, ClipTextEncoder } from "./clip.ts";
export { UNet2DConditionModel } from "./unet.ts";
export { AutoencoderKL, type LatentDistribution } from "./vae.ts";
export {
  loadStableDiffusion,
  type LoadStableDiffusionOptions,
  type StableDiffusion,
} from "./stable_diffusion.ts";
export {
  Conv2dModule,
  type LayerModule,
  LinearModule,
  type ModelPart,
  ModelWeights,
  randomWeights,
  uploadWeights,
} from "./weights.ts";
