/**
 * The Stable Diffusion models: CLIP text encoder, U-Net and VAE on the engine, their configs, and
 * the loaders that build them from a checkpoint (SD 1.x/2.x, and SDXL with its second text
 * encoder and conditioning).
 *
 * @module
 */
export type {
  AddEmbeddingConfig,
  SDConfig,
  SDXLConfig,
  TextEncoderConfig,
  UNetConfig,
  VAEConfig,
} from "../model_config/config.ts";
export { type ClipForwardOptions, ClipTextEncoder } from "./clip.ts";
export { UNet2DConditionModel } from "./unet.ts";
export { AutoencoderKL, type LatentDistribution } from "./vae.ts";
export {
  loadStableDiffusion,
  type LoadStableDiffusionOptions,
  type StableDiffusion,
} from "./stable_diffusion.ts";
export {
  loadStableDiffusionXL,
  type LoadStableDiffusionXLOptions,
  type StableDiffusionXL,
} from "./stable_diffusion_xl.ts";
export {
  encodeSdxlText,
  encodeTe2,
  type SdxlSizeCond,
  type SdxlTextEncoding,
  sdxlVector,
  sizeEmbeddings,
  type Te2Outputs,
  timeIds,
} from "./sdxl_conditioning.ts";
export {
  Conv2dModule,
  type LayerModule,
  LinearModule,
  type ModelPart,
  ModelWeights,
  randomWeights,
  uploadWeights,
} from "./weights.ts";
