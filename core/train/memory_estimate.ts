/**
 * GPU memory a training run will need, estimated before it starts from the model config and the
 * settings: the loaded weights (measured by the caller), the LoRA factors with their gradients
 * and optimizer state, the activations one step keeps for backward (U-Net and text encoder at
 * the largest bucket and batch), and the VAE's working set when latents are not cached. WebGPU
 * does not report a device's total memory, so the hard check is the adapter's per-buffer limit
 * (`maxStorageBufferBindingSize` / `maxBufferSize`): a run whose largest tensor exceeds it
 * cannot start, and the advice says what to change.
 *
 * The activation figures are approximations of what the engine keeps per ResNet and transformer
 * block (about 6 and 24 tensors of the block's width); the pool's size classes add up to 25%.
 *
 * @module
 */
import type { SDConfig, TextEncoderConfig } from "../model_config/config.ts";

/** Inputs of {@link estimateTrainingMemory}. */
export interface MemoryInputs {
  config: Pick<SDConfig, "unet" | "textEncoder" | "vae">;
  /** SDXL's second text encoder. */
  textEncoder2?: TextEncoderConfig;
  /** Bytes of the loaded model weights (measured). */
  weightBytes: number;
  /** Number of LoRA parameters (elements) and their element size. */
  loraElements: number;
  loraBytesPerElement: number;
  /** Optimizer state as a multiple of the parameters (AdamW 2, Lion/SGD 1, AdamW8bit 0.5, ...). */
  optimizerStateFactor: number;
  /** Element size of activations (2 for fp16, 4 for f32). */
  activationBytes: number;
  batchSize: number;
  /** Largest bucket [width, height] in pixels. */
  maxBucket: [number, number];
  /** Text sequence length (77, 152 or 227). */
  tokens: number;
  cacheLatents: boolean;
  vaeBatchSize: number;
  gradientCheckpointing: boolean;
  trainTextEncoder: boolean;
}

/** The estimate, in bytes. */
export interface MemoryEstimate {
  weights: number;
  lora: number;
  activations: number;
  vae: number;
  total: number;
  /** The largest single tensor expected. */
  largestTensor: number;
}

/** kohya's optimizer state per parameter element, in parameter-sized units. */
export function optimizerStateFactor(type: string): number {
  const t = (type || "AdamW").toLowerCase();
  if (t === "adamw") return 2;
  if (t === "adamw8bit") return 0.5;
  if (t === "lion" || t === "sgdnesterov") return 1;
  if (t === "adafactor") return 0.1;
  return 2;
}

/** Estimate the GPU memory of a training run. */
export function estimateTrainingMemory(i: MemoryInputs): MemoryEstimate {
  const u = i.config.unet;
  const [pw, ph] = i.maxBucket;
  const lw = pw / 8, lh = ph / 8;
  const b = i.batchSize * i.activationBytes;
  let unet = 0;
  let widest = 0;
  let blockMax = 0;
  const levels = u.blockOutChannels.length;
  for (let l = 0; l < levels; l++) {
    const c = u.blockOutChannels[l];
    const s = (lw / 2 ** l) * (lh / 2 ** l);
    const attn = u.downBlockTypes[l] === "CrossAttnDownBlock2D";
    // SDXL stacks several transformer blocks per level (1, 2, 10).
    const depth = u.transformerDepth?.[l] ?? 1;
    const res = 6 * c * s, tr = attn ? 24 * c * s * depth : 0;
    const blocks = u.layersPerBlock + (u.layersPerBlock + 1);
    unet += blocks * (res + tr) + (l === levels - 1 ? 2 * res + tr : 0);
    widest = Math.max(widest, 8 * c * s);
    blockMax = Math.max(blockMax, res + tr);
  }
  if (i.gradientCheckpointing) {
    // Only block inputs are kept, plus one block recomputed during backward.
    let inputs = 0;
    for (let l = 0; l < levels; l++) {
      const s = (lw / 2 ** l) * (lh / 2 ** l);
      inputs += (2 * u.layersPerBlock + 1) * 2 * u.blockOutChannels[l] * s;
    }
    unet = inputs + blockMax;
  }
  const te = i.config.textEncoder;
  const te2 = i.textEncoder2;
  const text = i.trainTextEncoder
    ? (te.numLayers * te.hiddenSize + (te2 ? te2.numLayers * te2.hiddenSize : 0)) * i.tokens * 12
    : 0;
  const activations = Math.ceil((unet + text) * b * 1.25);
  const lora = i.loraElements * i.loraBytesPerElement * (2 + i.optimizerStateFactor);
  let vae = 0;
  let largest = widest * b;
  if (!i.cacheLatents) {
    const c0 = i.config.vae.blockOutChannels[0];
    const level0 = c0 * pw * ph * i.activationBytes * i.batchSize;
    vae = 4 * level0;
    largest = Math.max(largest, level0);
  } else {
    const c0 = i.config.vae.blockOutChannels[0];
    largest = Math.max(largest, c0 * pw * ph * i.activationBytes * i.vaeBatchSize);
  }
  return {
    weights: i.weightBytes,
    lora,
    activations,
    vae,
    total: i.weightBytes + lora + activations + vae,
    largestTensor: largest,
  };
}

/**
 * Null when the run fits the adapter's per-buffer limit, else the advice: what exceeds it and
 * the settings that shrink it.
 */
export function memoryAdvice(
  e: MemoryEstimate,
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number },
  s: { batchSize: number; maxBucket: [number, number]; cacheLatents: boolean },
): string | null {
  const cap = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  if (e.largestTensor <= cap) return null;
  const tips = [
    s.batchSize > 1 ? "a smaller --train_batch_size" : null,
    "a lower --resolution / --max_bucket_reso (largest bucket now " +
    `${s.maxBucket[0]}x${s.maxBucket[1]})`,
    s.cacheLatents
      ? "--vae_batch_size 1"
      : "--cache_latents (the VAE then runs once, image by image)",
    "--mixed_precision fp16",
  ].filter((t) => t !== null);
  return `the largest tensor of this run needs about ${(e.largestTensor / 2 ** 20).toFixed(0)} ` +
    `MiB, more than this GPU allows in one buffer (${(cap / 2 ** 20).toFixed(0)} MiB). ` +
    `Try ${tips.join(", ")}.`;
}
