/**
 * Between 8-bit RGB rasters and the VAE's image tensors, as kohya's gen_img converts them:
 * `preprocess_image` (RGB / 255 * 2 - 1, NCHW) on the way in, and
 * `((x / 2 + 0.5).clamp(0, 1) * 255).round()` on the way out.
 *
 * @module
 */
import { Tensor } from "../../gpu/mod.ts";
import { LorakitError } from "../errors.ts";
import { makeImage, type RasterImage, toRGB } from "../image/image.ts";

/** Images (same size) as one tensor [B, 3, H, W] in [-1, 1]. */
export function imagesToTensor(images: readonly RasterImage[]): Tensor {
  if (images.length === 0) throw new LorakitError("img2img: no images to encode");
  const { width: w, height: h } = images[0];
  const plane = w * h;
  const out = new Float32Array(images.length * 3 * plane);
  images.forEach((src, b) => {
    if (src.width !== w || src.height !== h) {
      throw new LorakitError(
        `img2img: images of one batch must share a size, found ${w}x${h} and ` +
          `${src.width}x${src.height}`,
      );
    }
    const rgb = src.channels === 1 ? grayToRgb(src) : toRGB(src);
    const base = b * 3 * plane;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        out[base + c * plane + i] = (rgb.data[i * 3 + c] / 255) * 2 - 1;
      }
    }
  });
  return Tensor.fromArray(out, [images.length, 3, h, w]);
}

function grayToRgb(img: RasterImage): RasterImage {
  const out = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < img.width * img.height; i++) out.fill(img.data[i], i * 3, i * 3 + 3);
  return makeImage(img.width, img.height, 3, out);
}

/** Decoded images [B, 3, H, W] (about [-1, 1], host data) as 8-bit RGB rasters. */
export function tensorDataToImages(data: Float32Array, shape: readonly number[]): RasterImage[] {
  const [b, c, h, w] = shape;
  if (shape.length !== 4 || c !== 3 || data.length !== b * c * h * w) {
    throw new LorakitError(`decoded images: expected [B, 3, H, W], found [${shape.join(",")}]`);
  }
  const plane = h * w;
  const images: RasterImage[] = [];
  for (let n = 0; n < b; n++) {
    const px = new Uint8Array(plane * 3);
    for (let i = 0; i < plane; i++) {
      for (let k = 0; k < 3; k++) {
        const v = data[(n * 3 + k) * plane + i] / 2 + 0.5;
        const clamped = v > 1 ? 1 : v > 0 ? v : 0; // NaN -> 0
        px[i * 3 + k] = roundHalfEven(clamped * 255);
      }
    }
    images.push(makeImage(w, h, 3, px));
  }
  return images;
}

/** numpy's `round` (half to even), as kohya's `.round()` does before `astype("uint8")`. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
