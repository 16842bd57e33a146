/**
 * The complete list of tensors (internal names and shapes) an `SDConfig` or `SDXLConfig`
 * implies, following diffusers' `UNet2DConditionModel`/`AutoencoderKL` and HF `CLIPTextModel` constructors. Loaders
 * compare a checkpoint against it, so a missing, unknown or mis-shaped tensor is reported by name
 * when the file is opened rather than deep inside the model code.
 *
 * @module
 */
import type { SDConfig, SDXLConfig, TextEncoderConfig, UNetConfig, VAEConfig } from "./config.ts";

/** A tensor name (internal naming) and its shape. */
export interface ExpectedTensor {
  name: string;
  shape: number[];
}

/** Receives each expected tensor in turn. */
export type Add = (name: string, shape: number[]) => void;

function norm(add: Add, p: string, c: number): void {
  add(`${p}.weight`, [c]);
  add(`${p}.bias`, [c]);
}

function conv(add: Add, p: string, out: number, inp: number, k: number): void {
  add(`${p}.weight`, [out, inp, k, k]);
  add(`${p}.bias`, [out]);
}

function linear(add: Add, p: string, out: number, inp: number, bias = true): void {
  add(`${p}.weight`, [out, inp]);
  if (bias) add(`${p}.bias`, [out]);
}

/** ResNet block; `temb` 0 for the VAE's (no time embedding). */
function resnet(add: Add, p: string, inp: number, out: number, temb: number): void {
  norm(add, `${p}.norm1`, inp);
  conv(add, `${p}.conv1`, out, inp, 3);
  if (temb > 0) linear(add, `${p}.time_emb_proj`, out, temb);
  norm(add, `${p}.norm2`, out);
  conv(add, `${p}.conv2`, out, out, 3);
  if (inp !== out) conv(add, `${p}.conv_shortcut`, out, inp, 1);
}

/** `Transformer2DModel` with `depth` basic blocks (self-attn, cross-attn, GEGLU feed-forward). */
function transformer(
  add: Add,
  p: string,
  c: number,
  depth: number,
  ctx: number,
  linearProj: boolean,
): void {
  const proj = (name: string) => {
    add(`${p}.${name}.weight`, linearProj ? [c, c] : [c, c, 1, 1]);
    add(`${p}.${name}.bias`, [c]);
  };
  norm(add, `${p}.norm`, c);
  proj("proj_in");
  for (let d = 0; d < depth; d++) {
    const b = `${p}.transformer_blocks.${d}`;
    for (const [attn, kv] of [["attn1", c], ["attn2", ctx]] as const) {
      linear(add, `${b}.${attn}.to_q`, c, c, false);
      linear(add, `${b}.${attn}.to_k`, c, kv, false);
      linear(add, `${b}.${attn}.to_v`, c, kv, false);
      linear(add, `${b}.${attn}.to_out.0`, c, c);
    }
    linear(add, `${b}.ff.net.0.proj`, 8 * c, c); // GEGLU: value and gate, 4c each
    linear(add, `${b}.ff.net.2`, c, 4 * c);
    for (const n of ["norm1", "norm2", "norm3"]) norm(add, `${b}.${n}`, c);
  }
  proj("proj_out");
}

/** The U-Net's tensors (`unet.*`), SDXL's `add_embedding` included when configured. */
export function unetTensors(add: Add, u: UNetConfig): void {
  const boc = u.blockOutChannels;
  const levels = boc.length;
  const n = u.layersPerBlock;
  const t = u.timeEmbedDim;
  const tf = (p: string, c: number, depth: number) =>
    transformer(add, p, c, depth, u.crossAttentionDim, u.useLinearProjection);
  conv(add, "unet.conv_in", boc[0], u.inChannels, 3);
  linear(add, "unet.time_embedding.linear_1", t, boc[0]);
  linear(add, "unet.time_embedding.linear_2", t, t);
  if (u.addEmbedding !== undefined) {
    linear(add, "unet.add_embedding.linear_1", t, u.addEmbedding.inChannels);
    linear(add, "unet.add_embedding.linear_2", t, t);
  }
  for (let i = 0; i < levels; i++) {
    const p = `unet.down_blocks.${i}`;
    for (let j = 0; j < n; j++) {
      resnet(add, `${p}.resnets.${j}`, j === 0 ? boc[Math.max(i - 1, 0)] : boc[i], boc[i], t);
      if (u.downBlockTypes[i] === "CrossAttnDownBlock2D") {
        tf(`${p}.attentions.${j}`, boc[i], u.transformerDepth[i]);
      }
    }
    if (i < levels - 1) conv(add, `${p}.downsamplers.0.conv`, boc[i], boc[i], 3);
  }
  const last = boc[levels - 1];
  resnet(add, "unet.mid_block.resnets.0", last, last, t);
  tf("unet.mid_block.attentions.0", last, u.midTransformerDepth);
  resnet(add, "unet.mid_block.resnets.1", last, last, t);
  const rev = [...boc].reverse();
  let prev = rev[0];
  for (let i = 0; i < levels; i++) {
    const p = `unet.up_blocks.${i}`;
    const out = rev[i];
    const skipIn = rev[Math.min(i + 1, levels - 1)];
    for (let j = 0; j <= n; j++) {
      const resIn = j === 0 ? prev : out;
      const skip = j === n ? skipIn : out;
      resnet(add, `${p}.resnets.${j}`, resIn + skip, out, t);
      if (u.upBlockTypes[i] === "CrossAttnUpBlock2D") {
        tf(`${p}.attentions.${j}`, out, u.transformerDepth[levels - 1 - i]);
      }
    }
    if (i < levels - 1) conv(add, `${p}.upsamplers.0.conv`, out, out, 3);
    prev = out;
  }
  norm(add, "unet.conv_norm_out", boc[0]);
  conv(add, "unet.conv_out", u.outChannels, boc[0], 3);
}

function vaeMid(add: Add, p: string, c: number): void {
  resnet(add, `${p}.mid_block.resnets.0`, c, c, 0);
  norm(add, `${p}.mid_block.attentions.0.group_norm`, c);
  for (const x of ["to_q", "to_k", "to_v", "to_out.0"]) {
    linear(add, `${p}.mid_block.attentions.0.${x}`, c, c);
  }
  resnet(add, `${p}.mid_block.resnets.1`, c, c, 0);
}

/** The VAE's tensors (`vae.*`). */
export function vaeTensors(add: Add, v: VAEConfig): void {
  const boc = v.blockOutChannels;
  const levels = boc.length;
  const last = boc[levels - 1];
  const z = v.latentChannels;
  conv(add, "vae.encoder.conv_in", boc[0], v.inChannels, 3);
  for (let i = 0; i < levels; i++) {
    const p = `vae.encoder.down_blocks.${i}`;
    for (let j = 0; j < v.layersPerBlock; j++) {
      resnet(add, `${p}.resnets.${j}`, j === 0 ? boc[Math.max(i - 1, 0)] : boc[i], boc[i], 0);
    }
    if (i < levels - 1) conv(add, `${p}.downsamplers.0.conv`, boc[i], boc[i], 3);
  }
  vaeMid(add, "vae.encoder", last);
  norm(add, "vae.encoder.conv_norm_out", last);
  conv(add, "vae.encoder.conv_out", 2 * z, last, 3);
  conv(add, "vae.quant_conv", 2 * z, 2 * z, 1);
  conv(add, "vae.post_quant_conv", z, z, 1);
  conv(add, "vae.decoder.conv_in", last, z, 3);
  vaeMid(add, "vae.decoder", last);
  const rev = [...boc].reverse();
  for (let i = 0; i < levels; i++) {
    const p = `vae.decoder.up_blocks.${i}`;
    for (let j = 0; j <= v.layersPerBlock; j++) {
      resnet(add, `${p}.resnets.${j}`, j === 0 ? rev[Math.max(i - 1, 0)] : rev[i], rev[i], 0);
    }
    if (i < levels - 1) conv(add, `${p}.upsamplers.0.conv`, rev[i], rev[i], 3);
  }
  norm(add, "vae.decoder.conv_norm_out", boc[0]);
  conv(add, "vae.decoder.conv_out", v.outChannels, boc[0], 3);
}

/**
 * A CLIP text encoder's tensors under `part` (`text_encoder`, or SDXL's `text_encoder_2` with
 * its bias-free `text_projection` when `projectionDim` is set).
 */
export function textTensors(add: Add, t: TextEncoderConfig, part = "text_encoder"): void {
  const w = t.hiddenSize;
  const p = `${part}.text_model`;
  add(`${p}.embeddings.token_embedding.weight`, [t.vocabSize, w]);
  add(`${p}.embeddings.position_embedding.weight`, [t.maxPositions, w]);
  for (let l = 0; l < t.numLayers; l++) {
    const b = `${p}.encoder.layers.${l}`;
    for (const x of ["q_proj", "k_proj", "v_proj", "out_proj"]) {
      linear(add, `${b}.self_attn.${x}`, w, w);
    }
    norm(add, `${b}.layer_norm1`, w);
    linear(add, `${b}.mlp.fc1`, t.intermediateSize, w);
    linear(add, `${b}.mlp.fc2`, w, t.intermediateSize);
    norm(add, `${b}.layer_norm2`, w);
  }
  norm(add, `${p}.final_layer_norm`, w);
  if (t.projectionDim !== undefined) {
    linear(add, `${part}.text_projection`, t.projectionDim, w, false);
  }
}

/** Every tensor of the U-Net, VAE and text encoder that `config` implies, in a stable order. */
export function expectedTensors(config: SDConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  const add: Add = (name, shape) => out.push({ name, shape });
  unetTensors(add, config.unet);
  vaeTensors(add, config.vae);
  textTensors(add, config.textEncoder);
  return out;
}

/** Every tensor of an SDXL pipeline: U-Net, VAE, both text encoders, in a stable order. */
export function expectedTensorsSdxl(config: SDXLConfig): ExpectedTensor[] {
  const out: ExpectedTensor[] = [];
  const add: Add = (name, shape) => out.push({ name, shape });
  unetTensors(add, config.unet);
  vaeTensors(add, config.vae);
  textTensors(add, config.textEncoder);
  textTensors(add, config.textEncoder2, "text_encoder_2");
  return out;
}
