/**
 * How strongly a LoRA changes the model at each multiplier, measured where it acts: one U-Net
 * noise prediction for a fixed latent, timestep and prompt, at multiplier 0 (the base model) and
 * at each multiplier asked for. A LoRA adds `m · ΔW` to its layers, so for small deltas the
 * change of the output grows in proportion to `m`: the RMS change at 0.5 is about half of
 * that at 1.
 *
 * @module
 */
import { scope, Tensor } from "../../gpu/mod.ts";
import type { LoraNetwork } from "../lora/network.ts";
import type { StableDiffusion } from "../models/stable_diffusion.ts";
import { encodeConditioning } from "../sample/conditioning.ts";
import { GaussianGenerator } from "../sample/noise.ts";
import { rmsDiff } from "./generate.ts";

/** The output change at one multiplier. */
export interface MultiplierResponse {
  multiplier: number;
  /** RMS of `unet(m) − unet(0)`. */
  rmsChange: number;
  /** `rmsChange / rmsChange at multiplier 1` (NaN when 1 is not among the multipliers). */
  relativeToOne: number;
}

/** Options of {@link multiplierResponse}. */
export interface ResponseOptions {
  prompt: string;
  seed: number;
  timestep: number;
  /** Latent size `[h, w]`. */
  latentSize: [number, number];
  multipliers: readonly number[];
}

/**
 * U-Net output change against multiplier 0 for each multiplier. The network must be applied;
 * its multiplier is left at the last value measured.
 */
export async function multiplierResponse(
  sd: Pick<StableDiffusion, "tokenizer" | "textEncoder" | "unet">,
  net: LoraNetwork,
  opts: ResponseOptions,
): Promise<MultiplierResponse[]> {
  const [h, w] = opts.latentSize;
  const latent = new GaussianGenerator(opts.seed).gaussian(4 * h * w);
  const predict = async (m: number): Promise<Float32Array> => {
    net.setMultiplier(m);
    const out = scope(() => {
      const cond = encodeConditioning(sd.tokenizer, sd.textEncoder, [opts.prompt], [], {
        guidanceScale: 1,
      });
      const x = Tensor.fromArray(latent, [1, 4, h, w]);
      return sd.unet.forward(x, [opts.timestep], cond.context);
    });
    try {
      return await out.toArray();
    } finally {
      out.dispose();
    }
  };
  const base = await predict(0);
  const changes: { multiplier: number; rmsChange: number }[] = [];
  for (const m of opts.multipliers) {
    changes.push({ multiplier: m, rmsChange: m === 0 ? 0 : rmsDiff(await predict(m), base) });
  }
  const one = changes.find((c) => c.multiplier === 1)?.rmsChange ?? NaN;
  return changes.map((c) => ({ ...c, relativeToOne: c.rmsChange / one }));
}
