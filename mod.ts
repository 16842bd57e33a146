/**
 * lorakit: LoRA for Stable Diffusion 1.x/2.x on WebGPU — the library API.
 *
 * Load a model, apply a kohya LoRA file, and run the networks, mirroring the diffusers example
 * of kohya's manual:
 *
 * ```ts
 * import { createNetworkFromWeights, initGpu, loadStableDiffusion, noGrad } from "@lorakit/lorakit";
 * await initGpu();
 * const sd = await loadStableDiffusion("model.safetensors", { dtype: "f16" });
 * const lora = await createNetworkFromWeights(0.8, "my_lora.safetensors", sd);
 * lora.applyTo(sd);              // or lora.mergeTo(sd) to fold it into the weights
 * const ids = Int32Array.from(sd.tokenizer.pad(sd.tokenizer.encode("a photo of sks dog"), 77));
 * const context = noGrad(() => sd.textEncoder.forward(ids, { clipSkip: 1 }));
 * ```
 *
 * SDXL checkpoints load with `loadStableDiffusionXL` (two tokenizers and text encoders;
 * `sd.encodePrompts(prompts)` gives the context and pooled embedding, `sdxlVector` the U-Net's
 * `y` from the pooled embedding and the size conditioning); `createNetwork` and
 * `createNetworkFromWeights` take an SDXL model too (kohya's `lora_te1_`/`lora_te2_`/SGM-named
 * `lora_unet_` modules); the command-line LoRA tools take SDXL models and files too
 * (`extract_lora_from_models --sdxl`, `svd_merge_lora`, `resize_lora`, `extract_lora_from_dylora`,
 * and `sdxl_merge_lora` where kohya has its own SDXL script).
 *
 * The engine (tensors, ops, autograd, optimizers) is re-exported for building on it.
 *
 * @module
 */
export * from "./gpu/mod.ts";
export { LorakitError } from "./core/errors.ts";
export {
  AutoencoderKL,
  ClipTextEncoder,
  loadStableDiffusion,
  type LoadStableDiffusionOptions,
  loadStableDiffusionXL,
  type LoadStableDiffusionXLOptions,
  type SDConfig,
  type SDXLConfig,
  sdxlVector,
  type StableDiffusion,
  type StableDiffusionXL,
  UNet2DConditionModel,
} from "./core/models/mod.ts";
export {
  createNetwork,
  createNetworkFromWeights,
  type LoraModel,
  LoraNetwork,
  type NetworkOptions,
} from "./core/lora/network.ts";
export type { NetworkArgs } from "./core/lora/network_args.ts";
export { parseNetworkArgs } from "./core/kohya/network_args.ts";
export { ClipTokenizer } from "./core/text/clip_tokenizer.ts";
export { loadCheckpoint, saveLdmCheckpoint } from "./core/io/checkpoint.ts";
export { isSdxlCheckpoint, loadSdxlCheckpoint } from "./core/io/checkpoint_sdxl.ts";
export { saveSdxlCheckpoint } from "./core/io/checkpoint_sdxl_save.ts";
export { openSafetensors, writeSafetensors } from "./core/io/safetensors.ts";
export { openCkpt } from "./core/io/ckpt.ts";
