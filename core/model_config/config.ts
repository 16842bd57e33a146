/**
 * The architecture of an SD 1.x/2.x pipeline as the model code builds it: U-Net, VAE and text
 * encoder sizes (`infer.ts` infers them from a checkpoint's tensor names and shapes).
 *
 * The files of this folder depend on nothing in `core/io` or `core/models`: the checkpoint
 * loaders (`core/io`) and the models (`core/models`) both build on them.
 *
 * @module
 */

/** diffusers down block kinds used by SD 1.x/2.x. */
export type DownBlockType = "CrossAttnDownBlock2D" | "DownBlock2D";
/** diffusers up block kinds used by SD 1.x/2.x. */
export type UpBlockType = "CrossAttnUpBlock2D" | "UpBlock2D";

/** U-Net architecture (diffusers `UNet2DConditionModel` terms). */
export interface UNetConfig {
  inChannels: number;
  outChannels: number;
  /** Channels per resolution level, e.g. 320, 640, 1280, 1280. */
  blockOutChannels: number[];
  /** ResNets per down level; up levels have one more. */
  layersPerBlock: number;
  downBlockTypes: DownBlockType[];
  upBlockTypes: UpBlockType[];
  /** Attention heads per level (down level index; the mid block uses the last level's). */
  numHeads: number[];
  /** Head width per level: channels / heads. */
  headDim: number[];
  /** Transformer blocks per attention, per level (0 where the level has no attention). */
  transformerDepth: number[];
  /** Transformer blocks in the mid block's attention. */
  midTransformerDepth: number;
  /** Width of the text context fed to cross-attention (768 SD1, 1024 SD2). */
  crossAttentionDim: number;
  /**
   * `proj_in`/`proj_out` are Linear (SD2) rather than 1x1 convs (SD1); their weights have the
   * matching shape, `[C,C]` or `[C,C,1,1]`, as stored.
   */
  useLinearProjection: boolean;
  /** Time embedding width (4 x blockOutChannels[0] in SD). */
  timeEmbedDim: number;
  normGroups: number;
  /** ResNet GroupNorm eps. */
  normEps: number;
  /** Transformer input GroupNorm eps (1e-6 in SD). */
  transformerNormEps: number;
  /** Transformer LayerNorm eps. */
  layerNormEps: number;
}

/** VAE architecture (diffusers `AutoencoderKL` terms). */
export interface VAEConfig {
  inChannels: number;
  outChannels: number;
  latentChannels: number;
  blockOutChannels: number[];
  /** ResNets per encoder level; decoder levels have one more. */
  layersPerBlock: number;
  normGroups: number;
  normEps: number;
  /** Latent scaling applied by callers (0.18215 in SD). */
  scalingFactor: number;
}

/** Text encoder architecture (Hugging Face `CLIPTextConfig` terms). */
export interface TextEncoderConfig {
  vocabSize: number;
  hiddenSize: number;
  /** Layers the model runs (SD2: the stored OpenCLIP blocks minus the unused last one). */
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  hiddenAct: "quick_gelu" | "gelu";
  layerNormEps: number;
}

/** Everything the model code needs to build an SD 1.x/2.x pipeline. */
export interface SDConfig {
  /** SD 2.x (OpenCLIP text encoder, head-width rule). */
  v2: boolean;
  /** The U-Net predicts velocity rather than noise. */
  vPrediction: boolean;
  unet: UNetConfig;
  vae: VAEConfig;
  textEncoder: TextEncoderConfig;
}
