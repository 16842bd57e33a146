/**
 * The demo's base model: a Stable Diffusion 1.x checkpoint in the `sd1-tiny` architecture
 * (`tinySd1Config`) whose U-Net and VAE were trained on the demo's synthetic world
 * (`world.ts`; how: scripts/demo_base/README.md), with a frozen text encoder that keeps each
 * caption word's identity at its position (`tokenPositionTensors` of seed 42: the random CLIP
 * with every layer's attention output projection and second MLP layer zero). It ships with the
 * repository as `core/demo/base/lkdemo_base.safetensors` (f16) and its A1111 yaml; it is not part
 * of the published package.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { writeFileAtomic } from "../io/fs.ts";
import { yamlPathFor } from "./tiny_model.ts";

/** Where the committed checkpoint lives, beside this module. */
export const DEMO_BASE_URL = new URL("./base/lkdemo_base.safetensors", import.meta.url);

/** The seed of the text encoder the base model was trained with (`tokenPositionTensors`). */
export const DEMO_BASE_TEXT_SEED = 42;

async function fetchBytes(url: URL): Promise<Uint8Array> {
  try {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  } catch (e) {
    throw new LorakitError(
      `demo: the trained base model ${url.href} could not be read (${(e as Error).message}); ` +
        `it ships with the lorakit repository, not the published package`,
    );
  }
}

/** Copy the committed base model and its yaml to `path` and `<stem>.yaml`. */
export async function installDemoBase(path: string): Promise<void> {
  await writeFileAtomic(path, await fetchBytes(DEMO_BASE_URL));
  await writeFileAtomic(
    yamlPathFor(path),
    await fetchBytes(new URL(yamlPathFor(DEMO_BASE_URL.href))),
  );
}

/** The committed checkpoint's path on disk (for tests and scripts run from the repository). */
export function demoBasePath(): string {
  return decodeURIComponent(DEMO_BASE_URL.pathname);
}
