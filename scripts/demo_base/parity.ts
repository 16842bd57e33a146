/**
 * Compares lorakit's U-Net and VAE with the PyTorch networks of scripts/demo_base/sd_models.py
 * on the same weights and inputs (written by parity.py, packed by pack.ts in f32), so a layout
 * or activation mismatch shows before any training.
 *
 * Usage: deno run -A scripts/demo_base/parity.ts <dir>  (expects <dir>/io.safetensors and
 * <dir>/model.safetensors)
 */
import { initGpu, Tensor } from "../../gpu/mod.ts";
import { openSafetensors } from "../../core/io/safetensors.ts";
import { loadStableDiffusion } from "../../core/models/stable_diffusion.ts";

const dir = Deno.args[0];
await initGpu();
const io = await openSafetensors(`${dir}/io.safetensors`);
const get = async (n: string) => await io.readF32(n);
const sd = await loadStableDiffusion(`${dir}/model.safetensors`, { parts: ["unet", "vae"] });
const t = (h: { shape: number[]; data: Float32Array }) => Tensor.fromArray(h.data, h.shape);
const report = async (name: string, got: Tensor, want: Float32Array) => {
  const g = await got.toArray();
  let max = 0, ref = 0;
  for (let i = 0; i < g.length; i++) {
    max = Math.max(max, Math.abs(g[i] - want[i]));
    ref = Math.max(ref, Math.abs(want[i]));
  }
  console.log(`${name}: max |diff| ${max.toExponential(2)} (max |ref| ${ref.toFixed(3)})`);
};
await report(
  "unet",
  sd.unet.forward(t(await get("x")), [10, 500], t(await get("ctx"))),
  (await get("eps")).data,
);
await report("vae.encode mean", sd.vae.encode(t(await get("img"))).mean, (await get("mean")).data);
await report("vae.decode", sd.vae.decode(t(await get("x"))), (await get("dec")).data);
sd.dispose();
