/**
 * One SDXL LoRA training step reproduces kohya's sdxl_train_network on sdxl-tiny
 * (fixtures/sdxl-tiny/train): both text encoders' states, the pooled vector, the size
 * embeddings and the vector `y`, model_pred, loss, every gradient, the gradient norm before
 * clipping and the parameters after one AdamW step, for LierLa on both text encoders and the
 * U-Net (epsilon) and C3Lier on the U-Net alone (min-SNR, loss weights, clipping).
 *
 * kohya multiplies TE2's pooled state by the stored projection untransposed, where every other
 * SDXL consumer (and lorakit's trainer) uses the real layout; the fixture's pooled vector and
 * the gradients through it follow kohya's product, so this test's conditioning makes that
 * product too (the rest of the step is the trainer's own code).
 */
import assert from "node:assert/strict";
import { backward, concat, initGpu, matmul, rt, Tensor } from "../gpu/mod.ts";
import { openSafetensors } from "../core/io/safetensors.ts";
import { loadStableDiffusionXL } from "../core/models/stable_diffusion_xl.ts";
import { eosRows, sdxlVector, textProjection, timeIds } from "../core/models/sdxl_conditioning.ts";
import { gatherRows } from "../core/models/ops.ts";
import { createNetworkFromWeights } from "../core/lora/network.ts";
import { DdpmSchedule } from "../core/train/noise_schedule.ts";
import { type StepModel, trainStepForward } from "../core/train/step.ts";
import { sampleLossWeights } from "../core/train/batch_targets.ts";
import { sdxlSizeCond } from "../core/train/sdxl_size_cond.ts";
import { fixture } from "./fixtures.ts";
import { assertClose } from "./op_check.ts";
import { assertGradients, assertOptimizerStep } from "./train_step_check.ts";

interface Settings {
  text_encoder_lr: number | null;
  unet_lr: number | null;
  learning_rate: number | null;
  timesteps: number[];
  loss_weights: number[];
  min_snr_gamma?: number;
  max_grad_norm: number;
  original_sizes_hw: [number, number][];
  crop_top_lefts: [number, number][];
  target_sizes_hw: [number, number][];
  params_without_grad?: string[];
}

/**
 * As the SD 1.x step test: float32 accumulation order shows in small, cancelling gradients.
 * The ResNets' time-embedding projections (`emb_layers_1`) feed a GroupNorm with one channel per
 * group in this tiny model, which removes any per-channel constant: their LoRA gradients are
 * exactly zero in exact arithmetic and both sides hold float noise (~1e-10), so errors are
 * measured against at least 1e-4 of the largest gradient.
 */
const GRAD_TOL = 2e-3;

Deno.test("SDXL size conditioning follows kohya's get_crop_ltrb", () => {
  // A wide image in a square bucket sits centred with a top offset; a tall one a left offset.
  assert.deepEqual(sdxlSizeCond([1344, 768], [1024, 1024], false), {
    originalSize: [768, 1344],
    cropTopLeft: [219, 0],
    targetSize: [1024, 1024],
  });
  assert.deepEqual(sdxlSizeCond([512, 1024], [1024, 1024], false).cropTopLeft, [0, 256]);
  // Mirrored: the left is measured from the right edge of the fitted image.
  assert.deepEqual(sdxlSizeCond([512, 1024], [1024, 1024], true).cropTopLeft, [0, 256]);
  assert.deepEqual(sdxlSizeCond([600, 1000], [1024, 1024], true).cropTopLeft, [0, 205]);
});

for (const name of ["sdxl_step_lierla_eps", "sdxl_step_c3lier_snr"]) {
  Deno.test(`SDXL training step matches kohya: ${name}`, async () => {
    const model = fixture("sdxl-tiny/model.safetensors");
    if (!model) return;
    await initGpu();
    const dir = `sdxl-tiny/train/${name}`;
    const ref = await openSafetensors(fixture(`${dir}.safetensors`)!);
    const settings = JSON.parse(ref.metadata.settings) as Settings;
    const sd = await loadStableDiffusionXL(model);
    const net = await createNetworkFromWeights(1, fixture(`${dir}_lora_init.safetensors`)!, sd);
    net.applyTo(sd);
    const names = new Map<Tensor, string>();
    for (const m of net.modules) {
      m.downs[0].requiresGrad = true;
      m.ups[0].requiresGrad = true;
      names.set(m.downs[0], `${m.spec.prefix}.lora_down.weight`);
      names.set(m.ups[0], `${m.spec.prefix}.lora_up.weight`);
    }
    const f32 = async (k: string) => await ref.readF32(k);
    const ids = async (k: string) => Int32Array.from((await f32(k)).data);
    const ids1 = await ids("input_ids1"), ids2 = await ids("input_ids2");
    const sizeConds = settings.original_sizes_hw.map((o, i) => ({
      originalSize: o,
      cropTopLeft: settings.crop_top_lefts[i],
      targetSize: settings.target_sizes_hw[i],
    }));
    const seen: Record<string, Tensor> = {};
    const te1 = sd.textEncoder, te2 = sd.textEncoder2;
    const kohyaStep: StepModel = {
      condition(batch) {
        const [h1] = te1.hiddenStates(batch.inputIds, [te1.config.numLayers - 1]);
        const n = te2.config.numLayers;
        const [h2, top] = te2.hiddenStates(batch.inputIds2!, [n - 1, n]);
        const rows = eosRows(batch.inputIds2!, te2.config.maxPositions);
        const eos = gatherRows(te2.finalNorm.forward(top), rows, [rows.length, top.shape[2]]);
        // kohya: x_eos @ stored P, i.e. the internal Linear weight without its transpose.
        const pool = matmul(eos, textProjection(te2).weight);
        const y = sdxlVector(pool, batch.sizeConds!.map(timeIds), sd.config.unet.addEmbedding!);
        Object.assign(seen, {
          h1: h1.retain().keep(),
          h2: h2.retain().keep(),
          pool: pool.retain().keep(),
          y: y.retain().keep(),
        });
        return { context: concat([h1, h2], 2), y };
      },
      unet: sd.unet,
    };
    const lat = await f32("latents"), noise = await f32("noise");
    const timesteps = Array.from((await f32("timesteps")).data);
    assert.deepEqual(timesteps, settings.timesteps);
    const schedule = new DdpmSchedule();
    const out = trainStepForward(kohyaStep, schedule, {
      latents: Tensor.fromArray(lat.data, lat.shape),
      noise: Tensor.fromArray(noise.data, noise.shape),
      timesteps,
      inputIds: ids1,
      inputIds2: ids2,
      sizeConds,
      lossWeights: sampleLossWeights(settings.loss_weights, timesteps, schedule, {
        minSnrGamma: settings.min_snr_gamma ?? null,
      }),
    }, {});
    const near = async (label: string, t: Tensor, key: string, tol: number) =>
      assertClose(label, await t.toArray(), (await f32(key)).data, tol);
    await near("te1_hidden", seen.h1, "te1_hidden", 1e-4);
    await near("te2_hidden", seen.h2, "te2_hidden", 1e-4);
    await near("pool2", seen.pool, "pool2", 1e-4);
    await near("vector_embedding", seen.y, "vector_embedding", 1e-4);
    for (const t of Object.values(seen)) t.dispose();
    await near("target", out.target, "target", 1e-5);
    await near("model_pred", out.modelPred, "model_pred", 1e-4);
    await near("loss", out.loss, "loss", 1e-4);
    backward(out.loss);
    const params = net.parameters();
    const grads = await Promise.all(params.map(async (p) => {
      const key = `grad.${names.get(p)}`;
      const want = (await f32(key)).data;
      const got = p.grad ? await p.grad.toArray() : new Float32Array(want.length);
      return { key, got, want };
    }));
    assertGradients(grads, GRAD_TOL, 1e-4);
    // kohya's parameters outside the graph (TE1's last layer) have no gradient at all.
    const noGrad = new Set(settings.params_without_grad ?? []);
    await assertOptimizerStep(net, names, grads, settings, f32, noGrad);
    out.loss.dispose();
    out.modelPred.dispose();
    out.target.dispose();
    ref.close();
    net.dispose();
    sd.dispose();
    await rt().sync();
  });
}
