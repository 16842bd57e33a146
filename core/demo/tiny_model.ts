/**
 * The demo's base model: a deterministic, randomly initialised Stable Diffusion 1.x checkpoint
 * with the full SD1 topology and narrow widths (the architecture of the `sd1-tiny` test fixture:
 * U-Net and VAE channels 32/64/64/64, 2 attention heads, cross-attention width 32, a 3-layer
 * width-32 CLIP text encoder over the full 49408-token vocabulary). The tensor list comes from
 * `expectedTensors(config)` and the LDM key set from kohya's default layout (`saveLdmCheckpoint`
 * without a template), so the file is what any SD1 loader reads. What the weights cannot say (2
 * heads rather than SD1's 8) goes in the A1111-style `<stem>.yaml` written beside it.
 *
 * The weights are random, so the model draws noise-like images; it exists so the whole pipeline
 * can run with nothing downloaded.
 *
 * @module
 */
import { uniformRandom } from "../../gpu/random.ts";
import { type InternalTensors, saveLdmCheckpoint } from "../io/checkpoint.ts";
import { writeFileAtomic } from "../io/fs.ts";
import type { HostTensor, TensorInfo } from "../io/tensor_source.ts";
import type { SDConfig } from "../model_config/config.ts";
import { type ExpectedTensor, expectedTensors } from "../model_config/keys.ts";

/** The demo model's architecture (that of the `sd1-tiny` fixture). */
export function tinySd1Config(): SDConfig {
  return {
    v2: false,
    vPrediction: false,
    unet: {
      inChannels: 4,
      outChannels: 4,
      blockOutChannels: [32, 64, 64, 64],
      layersPerBlock: 2,
      downBlockTypes: [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
      ],
      upBlockTypes: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      numHeads: [2, 2, 2, 2],
      headDim: [16, 32, 32, 32],
      transformerDepth: [1, 1, 1, 0],
      midTransformerDepth: 1,
      crossAttentionDim: 32,
      useLinearProjection: false,
      timeEmbedDim: 128,
      normGroups: 32,
      normEps: 1e-5,
      transformerNormEps: 1e-6,
      layerNormEps: 1e-5,
    },
    vae: {
      inChannels: 3,
      outChannels: 3,
      latentChannels: 4,
      blockOutChannels: [32, 64, 64, 64],
      layersPerBlock: 2,
      normGroups: 32,
      normEps: 1e-6,
      scalingFactor: 0.18215,
    },
    textEncoder: {
      vocabSize: 49408,
      hiddenSize: 32,
      numLayers: 3,
      numHeads: 2,
      intermediateSize: 128,
      maxPositions: 77,
      hiddenAct: "quick_gelu",
      layerNormEps: 1e-5,
    },
  };
}

/**
 * The CompVis inference yaml A1111 reads from `<checkpoint stem>.yaml`: the same as the fixture's,
 * so the loader learns the 2 U-Net heads and 2 text-encoder heads the weights cannot show.
 */
export function tinySd1Yaml(config: SDConfig = tinySd1Config()): string {
  const u = config.unet, v = config.vae, t = config.textEncoder;
  const mult = (c: number[]) => `[ ${c.map((x) => x / c[0]).join(", ")} ]`;
  return `model:
  base_learning_rate: 1.0e-04
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    linear_start: 0.00085
    linear_end: 0.0120
    num_timesteps_cond: 1
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    image_size: 64
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    scale_factor: ${v.scalingFactor}
    use_ema: False
    unet_config:
      target: ldm.modules.diffusionmodules.openaimodel.UNetModel
      params:
        image_size: 32
        in_channels: ${u.inChannels}
        out_channels: ${u.outChannels}
        model_channels: ${u.blockOutChannels[0]}
        attention_resolutions: [ 4, 2, 1 ]
        num_res_blocks: ${u.layersPerBlock}
        channel_mult: ${mult(u.blockOutChannels)}
        num_heads: ${u.numHeads[0]}
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: ${u.crossAttentionDim}
        legacy: False
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: ${v.latentChannels}
        ddconfig:
          double_z: true
          z_channels: ${v.latentChannels}
          resolution: 256
          in_channels: ${v.inChannels}
          out_ch: ${v.outChannels}
          ch: ${v.blockOutChannels[0]}
          ch_mult: ${mult(v.blockOutChannels)}
          num_res_blocks: ${v.layersPerBlock}
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity
    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
      params:
        num_attention_heads: ${t.numHeads}  # tiny model only; real CLIP-L: width / 64
`;
}

/** FNV-1a of a name, so each tensor's values depend on the seed and its name only. */
function nameHash(name: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/**
 * One tensor's initial values: norm weights 1 ± 0.1, norm biases ± 0.1, other biases ± 0.02,
 * embeddings with standard deviation 0.02 as CLIP's initialiser, other weights uniform with
 * standard deviation `1/sqrt(fan_in)`.
 */
export function initTensor(spec: ExpectedTensor, seed: number): Float32Array {
  const { name, shape } = spec;
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  const rand = uniformRandom((seed ^ nameHash(name)) >>> 0);
  if (shape.length === 1) {
    const isNorm = /norm[^.]*\.(weight|bias)$|layer_norm\d?\.(weight|bias)$/.test(name);
    // Norm weights near 1; biases small but non-zero, as in a trained model. The final
    // LayerNorm's bias is offset so the text embeddings' mean is clearly non-zero: kohya's
    // prompt weighting ("original" normalisation) divides by that mean.
    const centre = !isNorm || name.endsWith(".bias") ? 0 : 1;
    const offset = name.endsWith("final_layer_norm.bias") ? 0.1 : 0;
    const spread = isNorm ? 0.1 : 0.02;
    for (let i = 0; i < n; i++) data[i] = centre + offset + (2 * rand() - 1) * spread;
    return data;
  }
  const embedding = name.includes(".embeddings.");
  const std = embedding ? 0.02 : 1 / Math.sqrt(n / shape[0]);
  const a = std * Math.sqrt(3); // uniform(-a, a) has standard deviation `std`
  for (let i = 0; i < n; i++) data[i] = (2 * rand() - 1) * a;
  return data;
}

/** The demo model's tensors in the internal naming, produced one at a time from `seed`. */
export function tinyModelTensors(config: SDConfig, seed: number): InternalTensors {
  const specs = new Map(expectedTensors(config).map((s) => [s.name, s]));
  return {
    names: () => [...specs.keys()],
    info: (name): TensorInfo => ({ name, dtype: "F32", shape: [...specs.get(name)!.shape] }),
    readF32: (name): Promise<HostTensor> => {
      const spec = specs.get(name)!;
      return Promise.resolve({ shape: [...spec.shape], data: initTensor(spec, seed) });
    },
  };
}

/** The text-encoder tensors {@link tokenPositionTensors} zeroes. */
const MIXING = /^text_encoder\..*\.(self_attn\.out_proj|mlp\.fc2)\.(weight|bias)$/;

/**
 * The demo base model's tensors: {@link tinyModelTensors} with every text-encoder layer's
 * attention output projection and second MLP layer (weights and biases) zero. Each layer then
 * adds nothing to the residual stream, so every output state is the final LayerNorm of its
 * token's embedding plus its position's: a caption word keeps its identity at its position
 * instead of being mixed by random layers with the words before it, which gives the U-Net's
 * cross-attention a signal it can learn to read ("red" at the object's place, "blue" at the
 * background's). Same names and shapes as any SD1 checkpoint of this architecture.
 */
export function tokenPositionTensors(config: SDConfig, seed: number): InternalTensors {
  const random = tinyModelTensors(config, seed);
  return {
    ...random,
    readF32: async (name): Promise<HostTensor> => {
      const t = await random.readF32(name);
      return MIXING.test(name) ? { shape: t.shape, data: new Float32Array(t.data.length) } : t;
    },
  };
}

/** The yaml path A1111 and the loader look for beside a checkpoint: `<stem>.yaml`. */
export function yamlPathFor(checkpointPath: string): string {
  return checkpointPath.replace(/\.[^./]+$/, "") + ".yaml";
}

/**
 * Write the demo base model as an LDM `.safetensors` (atomically) plus its `<stem>.yaml`. The
 * same seed always gives the same bytes.
 */
export async function writeTinyModel(path: string, seed: number): Promise<SDConfig> {
  const config = tinySd1Config();
  await saveLdmCheckpoint(path, tinyModelTensors(config, seed), config, {
    savePrecision: "float",
    metadata: { "lorakit.demo": "random SD1-shaped base model", "lorakit.seed": String(seed) },
  });
  await writeFileAtomic(yamlPathFor(path), tinySd1Yaml(config));
  return config;
}
