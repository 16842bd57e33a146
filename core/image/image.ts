/**
 * The in-memory raster every image function in lorakit trades in: interleaved 8-bit channels,
 * row-major, no padding between rows. Decoders produce RGBA (alpha kept, for kohya's
 * `alpha_mask`); the helpers here turn that into the RGB kohya trains on.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** An 8-bit image: `data.length === width * height * channels`. */
export interface RasterImage {
  readonly width: number;
  readonly height: number;
  /** 1 (gray), 3 (RGB) or 4 (RGBA). */
  readonly channels: 1 | 3 | 4;
  readonly data: Uint8Array;
}

/** Build a RasterImage, checking that the buffer matches the shape. */
export function makeImage(
  width: number,
  height: number,
  channels: 1 | 3 | 4,
  data?: Uint8Array,
): RasterImage {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new LorakitError(`image size must be positive integers, found ${width}x${height}`);
  }
  const n = width * height * channels;
  const buf = data ?? new Uint8Array(n);
  if (buf.length !== n) {
    throw new LorakitError(
      `image buffer holds ${buf.length} bytes, expected ${width}x${height}x${channels} = ${n}`,
    );
  }
  return { width, height, channels, data: buf };
}

/**
 * RGB by dropping alpha: what Pillow's `convert("RGB")` does and so what kohya's
 * `load_image(alpha=False)` and `resize_images_to_resolution.py` feed the model (transparent
 * pixels keep whatever colour they store).
 */
export function toRGB(img: RasterImage): RasterImage {
  if (img.channels === 3) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  const src = img.data;
  if (img.channels === 1) {
    for (let i = 0; i < n; i++) out[i * 3] = out[i * 3 + 1] = out[i * 3 + 2] = src[i];
  } else {
    for (let i = 0, j = 0; i < n * 4; i += 4, j += 3) {
      out[j] = src[i];
      out[j + 1] = src[i + 1];
      out[j + 2] = src[i + 2];
    }
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** RGBA, with opaque alpha added to gray or RGB input. */
export function toRGBA(img: RasterImage): RasterImage {
  if (img.channels === 4) return img;
  const n = img.width * img.height;
  const out = new Uint8Array(n * 4).fill(255);
  const src = img.data;
  for (let i = 0; i < n; i++) {
    const s = img.channels === 1 ? i : i * 3;
    out[i * 4] = src[s];
    out[i * 4 + 1] = src[img.channels === 1 ? s : s + 1];
    out[i * 4 + 2] = src[img.channels === 1 ? s : s + 2];
  }
  return { width: img.width, height: img.height, channels: 4, data: out };
}

/**
 * RGB composited over a white background (`c * a + 255 * (1 - a)`, rounded), the usual way to
 * flatten a transparent image so transparent areas read as white instead of their hidden colour.
 */
export function compositeOnWhite(img: RasterImage): RasterImage {
  if (img.channels !== 4) return toRGB(img);
  const n = img.width * img.height;
  const out = new Uint8Array(n * 3);
  const src = img.data;
  for (let i = 0, j = 0; i < n * 4; i += 4, j += 3) {
    const a = src[i + 3];
    const inv = 255 - a;
    // Integer form of c*a/255 + (255 - a), rounded half up, so results are exact and portable.
    out[j] = Math.floor((src[i] * a + 255 * inv + 127) / 255);
    out[j + 1] = Math.floor((src[i + 1] * a + 255 * inv + 127) / 255);
    out[j + 2] = Math.floor((src[i + 2] * a + 255 * inv + 127) / 255);
  }
  return { width: img.width, height: img.height, channels: 3, data: out };
}

/** The alpha plane as a 1-channel image (255 everywhere when there is no alpha). */
export function alphaChannel(img: RasterImage): RasterImage {
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  if (img.channels !== 4) out.fill(255);
  else for (let i = 0; i < n; i++) out[i] = img.data[i * 4 + 3];
  return { width: img.width, height: img.height, channels: 1, data: out };
}

/** Copy out the rectangle at (`x`, `y`) of size `width` x `height`; it must lie inside. */
export function crop(
  img: RasterImage,
  x: number,
  y: number,
  width: number,
  height: number,
): RasterImage {
  if (
    x < 0 || y < 0 || width < 1 || height < 1 || x + width > img.width || y + height > img.height
  ) {
    throw new LorakitError(
      `crop ${width}x${height} at (${x}, ${y}) does not fit inside a ${img.width}x${img.height} image`,
    );
  }
  if (x === 0 && y === 0 && width === img.width && height === img.height) return img;
  const c = img.channels;
  const out = new Uint8Array(width * height * c);
  const rowBytes = width * c;
  for (let r = 0; r < height; r++) {
    const s = ((y + r) * img.width + x) * c;
    out.set(img.data.subarray(s, s + rowBytes), r * rowBytes);
  }
  return { width, height, channels: c, data: out };
}
