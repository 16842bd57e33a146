/**
 * The architecture of an SD 1.x/2.x or SDXL pipeline as the model code builds it: U-Net, VAE and text
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
  /**
   * SDXL's added conditioning (`label_emb` / diffusers `add_embedding`, "text_time"): a vector
   * `y` of `inChannels` (the pooled text embedding, then `timeIdEmbedDim` sinusoidal features
   * per time id) through Linear, SiLU, Linear, added to the time embedding. Absent in SD 1.x/2.x.
   */
  addEmbedding?: AddEmbeddingConfig;
}

/** SDXL's `label_emb` sizes (diffusers `projection_class_embeddings_input_dim`, ...). */
export interface AddEmbeddingConfig {
  /** Width of `y` (2816 in SDXL base = 1280 pooled + 6 x 256). */
  inChannels: number;
  /** Sinusoidal width per time id (256 in SDXL; diffusers `addition_time_embed_dim`). */
  timeIdEmbedDim: number;
  /** Number of time ids (6: original h, w, crop top, left, target h, w). */
  numTimeIds: number;
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
  /** Latent scaling applied by callers (0.18215 in SD, 0.13025 in SDXL). */
  scalingFactor: number;
  /**
   * The VAE overflows in f16 and should run in f32 (diffusers `force_upcast`; SDXL's VAE).
   * Absent means false.
   */
  forceUpcast?: boolean;
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
  /**
   * Width of the pooled output's `text_projection` (SDXL's second text encoder, Hugging Face
   * `CLIPTextModelWithProjection`); absent for a text encoder without one.
   */
  projectionDim?: number;
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

/**
 * Everything the model code needs to build an SDXL pipeline: two text encoders (CLIP-L layout,
 * internal prefix `text_encoder.`; OpenCLIP bigG in Hugging Face layout with `text_projection`,
 * prefix `text_encoder_2.`), whose penultimate hidden states concatenate into the context.
 */
export interface SDXLConfig {
  /** The U-Net predicts velocity rather than noise (SDXL base: false). */
  vPrediction: boolean;
  /** With `addEmbedding` set. */
  unet: UNetConfig;
  vae: VAEConfig;
  textEncoder: TextEncoderConfig;
  /** With `projectionDim` set. */
  textEncoder2: TextEncoderConfig;
}
