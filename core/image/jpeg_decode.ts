/**
 * A JPEG decoder in plain TypeScript that reproduces libjpeg-turbo's default decode, which is
 * what kohya's Pillow (and OpenCV's imread) use: baseline and extended sequential Huffman and
 * progressive scans, 1 (gray) or 3 (YCbCr, or RGB when the file says so) components with any
 * integer sampling ratios, restart intervals, the ISLOW integer IDCT, fancy upsampling and
 * libjpeg's fixed-point YCbCr->RGB. The pixels equal Pillow's `Image.open(...).convert("RGB")`.
 *
 * Not supported, each with a clear error: 4-component (CMYK/YCCK) and 2-component files,
 * arithmetic coding, lossless and hierarchical JPEG, 12-bit samples, and scans that use a
 * Huffman table the file never defines (libjpeg substitutes the standard tables, for Motion-JPEG
 * frames). A progressive file whose scans stop before the last refinement is decoded from the
 * coefficients it has, without libjpeg's block smoothing of such partial images.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { type ComponentPlane, type JpegColorSpace, planesToPixels } from "./jpeg_color.ts";
import { buildHuffmanTable, type HuffmanTable, nextMarker } from "./jpeg_huffman.ts";
import { idctIslow } from "./jpeg_idct.ts";
import { decodeScan, type FrameComponent, naturalIndex, type ScanHeader } from "./jpeg_scan.ts";

/** A decoded JPEG: gray (1 channel) or RGB (3), rows packed, no EXIF orientation applied. */
export interface JpegPixels {
  readonly width: number;
  readonly height: number;
  readonly channels: 1 | 3;
  readonly data: Uint8Array;
}

/** Options of {@link decodeJpeg}. */
export interface JpegDecodeOptions {
  /** Refuse frames with more pixels than this (default 2^28), before allocating them. */
  maxPixels?: number;
}

interface Frame {
  width: number;
  height: number;
  progressive: boolean;
  maxH: number;
  maxV: number;
  mcusPerLine: number;
  mcusPerColumn: number;
  components: FrameComponent[];
}

/** Parser state: tables in force and markers seen. */
interface State {
  readonly name: string;
  readonly qt: (Uint16Array | null)[];
  readonly dc: (HuffmanTable | null)[];
  readonly ac: (HuffmanTable | null)[];
  restartInterval: number;
  sawJfif: boolean;
  adobeTransform: number;
  frame: Frame | null;
  /** Quantisation tables latched per component at its first scan (as libjpeg does). */
  readonly latched: Map<FrameComponent, Uint16Array>;
  scans: number;
  /** Blocks decoded by the scans so far (see MAX_PASSES). */
  blocksDecoded: number;
  readonly maxPixels: number;
}

const SOF_NAMES: Record<number, string> = {
  0xc3: "lossless",
  0xc5: "hierarchical (differential sequential)",
  0xc6: "hierarchical (differential progressive)",
  0xc7: "hierarchical (differential lossless)",
  0xc9: "arithmetic-coded sequential",
  0xca: "arithmetic-coded progressive",
  0xcb: "arithmetic-coded lossless",
  0xcd: "arithmetic-coded hierarchical",
  0xce: "arithmetic-coded hierarchical",
  0xcf: "arithmetic-coded hierarchical",
};

/**
 * Every scan walks all the blocks of its components, whatever its data holds, so a small file of
 * repeated scan headers could take minutes. The scans may decode at most this many times the
 * frame's blocks; libjpeg's progressive scripts decode it about 10 times (6 to 10 scans).
 */
const MAX_PASSES = 64;

/** Blocks a scan decodes: its component's used blocks, or every MCU's blocks when interleaved. */
function scanBlocks(f: Frame, scan: ScanHeader): number {
  if (scan.components.length === 1) {
    const c = scan.components[0];
    return c.usedBlocksPerLine * c.usedBlocksPerColumn;
  }
  const perMcu = scan.components.reduce((n, c) => n + c.h * c.v, 0);
  return f.mcusPerLine * f.mcusPerColumn * perMcu;
}

function corrupt(name: string, what: string): LorakitError {
  return new LorakitError(`${name}: corrupt JPEG (${what})`);
}

function readDqt(s: State, seg: Uint8Array): void {
  let p = 0;
  while (p < seg.length) {
    const pq = seg[p] >> 4;
    const tq = seg[p] & 15;
    const bytes = pq === 0 ? 64 : 128;
    if (tq > 3 || pq > 1 || p + 1 + bytes > seg.length) throw corrupt(s.name, "bad DQT segment");
    const t = new Uint16Array(64);
    for (let k = 0; k < 64; k++) {
      t[naturalIndex(k)] = pq === 0
        ? seg[p + 1 + k]
        : (seg[p + 1 + 2 * k] << 8) | seg[p + 2 + 2 * k];
    }
    s.qt[tq] = t;
    p += 1 + bytes;
  }
}

function readDht(s: State, seg: Uint8Array): void {
  let p = 0;
  while (p < seg.length) {
    if (p + 17 > seg.length) throw corrupt(s.name, "bad DHT segment");
    const tc = seg[p] >> 4;
    const th = seg[p] & 15;
    const counts = seg.subarray(p + 1, p + 17);
    let n = 0;
    for (const c of counts) n += c;
    if (tc > 1 || th > 3 || n > 256 || p + 17 + n > seg.length) {
      throw corrupt(s.name, "bad DHT segment");
    }
    const table = buildHuffmanTable(counts, seg.subarray(p + 17, p + 17 + n), s.name);
    (tc === 0 ? s.dc : s.ac)[th] = table;
    p += 17 + n;
  }
}

function readSof(s: State, marker: number, seg: Uint8Array): void {
  if (s.frame) throw corrupt(s.name, "more than one frame header");
  if (marker in SOF_NAMES) {
    throw new LorakitError(
      `${s.name}: ${
        SOF_NAMES[marker]
      } JPEG is not supported (only baseline, extended and progressive Huffman-coded JPEGs are); re-save it as a standard JPEG or PNG`,
    );
  }
  if (seg.length < 6) throw corrupt(s.name, "short frame header");
  const precision = seg[0];
  const height = (seg[1] << 8) | seg[2];
  const width = (seg[3] << 8) | seg[4];
  const n = seg[5];
  if (precision !== 8) {
    throw new LorakitError(`${s.name}: ${precision}-bit JPEG samples are not supported (8 only)`);
  }
  if (width === 0 || height === 0) throw corrupt(s.name, `frame size ${width}x${height}`);
  if (width * height > s.maxPixels) {
    throw new LorakitError(
      `${s.name}: image is ${width}x${height} (${
        width * height
      } pixels), more than the ${s.maxPixels} allowed`,
    );
  }
  if (n === 4) {
    throw new LorakitError(
      `${s.name}: 4-component (CMYK/YCCK, Adobe) JPEGs are not supported; convert it to RGB`,
    );
  }
  if (n !== 1 && n !== 3) {
    throw new LorakitError(`${s.name}: JPEG with ${n} components is not supported (1 or 3 only)`);
  }
  if (seg.length < 6 + 3 * n) throw corrupt(s.name, "short frame header");
  const raw = [];
  for (let i = 0; i < n; i++) {
    const o = 6 + 3 * i;
    const h = seg[o + 1] >> 4, v = seg[o + 1] & 15, tq = seg[o + 2];
    if (h < 1 || h > 4 || v < 1 || v > 4 || tq > 3) throw corrupt(s.name, "bad component header");
    raw.push({ id: seg[o], h, v, tq });
  }
  const maxH = Math.max(...raw.map((c) => c.h));
  const maxV = Math.max(...raw.map((c) => c.v));
  const mcusPerLine = Math.ceil(width / (8 * maxH));
  const mcusPerColumn = Math.ceil(height / (8 * maxV));
  // Coefficients are stored, and every scan decodes, whole MCUs: a 1-pixel-wide frame of 4x2
  // MCUs holds 32x the pixels it shows, so the cap applies to the padded size.
  const paddedW = mcusPerLine * 8 * maxH;
  const paddedH = mcusPerColumn * 8 * maxV;
  if (paddedW * paddedH > s.maxPixels) {
    throw new LorakitError(
      `${s.name}: image is ${width}x${height}, stored in whole ${8 * maxH}x${8 * maxV} blocks as ` +
        `${paddedW}x${paddedH} (${paddedW * paddedH} pixels), more than the ${s.maxPixels} allowed`,
    );
  }
  const components = raw.map((c): FrameComponent => {
    const cw = Math.ceil((width * c.h) / maxH);
    const ch = Math.ceil((height * c.v) / maxV);
    const blocksPerLine = mcusPerLine * c.h;
    const blocksPerColumn = mcusPerColumn * c.v;
    return {
      ...c,
      width: cw,
      height: ch,
      blocksPerLine,
      blocksPerColumn,
      usedBlocksPerLine: Math.ceil(cw / 8),
      usedBlocksPerColumn: Math.ceil(ch / 8),
      coefs: new Int16Array(blocksPerLine * blocksPerColumn * 64),
    };
  });
  s.frame = {
    width,
    height,
    progressive: marker === 0xc2,
    maxH,
    maxV,
    mcusPerLine,
    mcusPerColumn,
    components,
  };
}

function readSos(s: State, seg: Uint8Array): ScanHeader {
  const f = s.frame;
  if (!f) throw corrupt(s.name, "scan before the frame header");
  const n = seg[0];
  if (n < 1 || n > 4 || seg.length < 4 + 2 * n) throw corrupt(s.name, "bad scan header");
  const components: FrameComponent[] = [];
  const dc: (HuffmanTable | null)[] = [];
  const ac: (HuffmanTable | null)[] = [];
  const ss = seg[1 + 2 * n], se = seg[2 + 2 * n];
  const ah = seg[3 + 2 * n] >> 4, al = seg[3 + 2 * n] & 15;
  const needDc = !f.progressive || (ss === 0 && ah === 0);
  const needAc = !f.progressive || ss > 0;
  let blocks = 0;
  for (let i = 0; i < n; i++) {
    const id = seg[1 + 2 * i];
    const c = f.components.find((x) => x.id === id);
    if (!c || components.includes(c)) throw corrupt(s.name, `scan names component ${id}`);
    const td = seg[2 + 2 * i] >> 4, ta = seg[2 + 2 * i] & 15;
    const d = s.dc[td & 3], a = s.ac[ta & 3];
    if ((needDc && !d) || (needAc && !a)) {
      throw new LorakitError(
        `${s.name}: JPEG scan uses a Huffman table the file does not define (Motion-JPEG frames without tables are not supported)`,
      );
    }
    if (!s.latched.has(c)) {
      const q = s.qt[c.tq];
      if (!q) throw corrupt(s.name, `no quantisation table ${c.tq}`);
      s.latched.set(c, q);
    }
    components.push(c);
    dc.push(needDc ? d : null);
    ac.push(needAc ? a : null);
    blocks += c.h * c.v;
  }
  if (n > 1 && blocks > 10) throw corrupt(s.name, "more than 10 blocks per MCU");
  return { components, dc, ac, ss, se, ah, al, restartInterval: s.restartInterval };
}

/** 3-component colour space by libjpeg's rules: JFIF, else Adobe's transform, else the IDs. */
function colorSpace(s: State, f: Frame): JpegColorSpace {
  if (f.components.length === 1) return "gray";
  if (s.sawJfif) return "ycc";
  if (s.adobeTransform >= 0) return s.adobeTransform === 0 ? "rgb" : "ycc";
  const ids = f.components.map((c) => c.id).join(",");
  return ids === "82,71,66" ? "rgb" : "ycc";
}

function toPlanes(s: State, f: Frame): ComponentPlane[] {
  return f.components.map((c) => {
    const stride = c.blocksPerLine * 8;
    const data = new Uint8Array(stride * c.usedBlocksPerColumn * 8);
    const q = s.latched.get(c) ?? s.qt[c.tq] ?? new Uint16Array(64);
    for (let by = 0; by < c.usedBlocksPerColumn; by++) {
      for (let bx = 0; bx < c.usedBlocksPerLine; bx++) {
        idctIslow(
          c.coefs,
          (by * c.blocksPerLine + bx) * 64,
          q,
          data,
          by * 8 * stride + bx * 8,
          stride,
        );
      }
    }
    return { data, stride, width: c.width, height: c.height, h: c.h, v: c.v };
  });
}

/** Decode a JPEG held in memory; `name` (usually the path) goes into errors. */
export function decodeJpeg(
  bytes: Uint8Array,
  name: string,
  options: JpegDecodeOptions = {},
): JpegPixels {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) {
    throw corrupt(name, "no start-of-image marker");
  }
  const s: State = {
    name,
    qt: [null, null, null, null],
    dc: [null, null, null, null],
    ac: [null, null, null, null],
    restartInterval: 0,
    sawJfif: false,
    adobeTransform: -1,
    frame: null,
    latched: new Map(),
    scans: 0,
    blocksDecoded: 0,
    maxPixels: options.maxPixels ?? 1 << 28,
  };
  let p = 2;
  for (;;) {
    p = nextMarker(bytes, p);
    if (p + 1 >= bytes.length) break; // no EOI: decode what the scans gave, as libjpeg does
    const m = bytes[p + 1];
    if (m === 0xd9) break;
    if ((m >= 0xd0 && m <= 0xd7) || m === 0x01) {
      p += 2; // parameterless markers
      continue;
    }
    if (p + 4 > bytes.length) throw new LorakitError(`${name}: truncated JPEG (inside a marker)`);
    const len = (bytes[p + 2] << 8) | bytes[p + 3];
    if (len < 2 || p + 2 + len > bytes.length) {
      throw new LorakitError(`${name}: truncated or corrupt JPEG (marker 0xFF${m.toString(16)})`);
    }
    const seg = bytes.subarray(p + 4, p + 2 + len);
    p += 2 + len;
    if (m === 0xdb) readDqt(s, seg);
    else if (m === 0xc4) readDht(s, seg);
    else if (m === 0xcc) {
      throw new LorakitError(`${name}: arithmetic-coded JPEG is not supported`);
    } else if (m >= 0xc0 && m <= 0xcf) readSof(s, m, seg);
    else if (m === 0xdd) {
      if (seg.length < 2) throw corrupt(name, "short DRI segment");
      s.restartInterval = (seg[0] << 8) | seg[1];
    } else if (m === 0xe0) {
      if (seg.length >= 5 && String.fromCharCode(...seg.subarray(0, 5)) === "JFIF\0") {
        s.sawJfif = true;
      }
    } else if (m === 0xee) {
      if (seg.length >= 12 && String.fromCharCode(...seg.subarray(0, 5)) === "Adobe") {
        s.adobeTransform = seg[11];
      }
    } else if (m === 0xda) {
      const scan = readSos(s, seg);
      const f = s.frame!;
      s.blocksDecoded += scanBlocks(f, scan);
      const frameBlocks = f.components.reduce((n, c) => n + c.blocksPerLine * c.blocksPerColumn, 0);
      if (s.blocksDecoded > MAX_PASSES * frameBlocks) {
        throw corrupt(
          name,
          `its ${s.scans + 1} scans decode the frame more than ${MAX_PASSES} times over; ` +
            `encoders write about 10 scans`,
        );
      }
      p = decodeScan(bytes, p, s.frame!, scan, name);
      s.scans++;
    }
    // APPn (EXIF is read separately by exif.ts), COM, DNL and others: skipped.
  }
  const f = s.frame;
  if (!f || s.scans === 0) throw corrupt(name, "no image data before the end of the file");
  const space = colorSpace(s, f);
  const { channels, data } = planesToPixels(toPlanes(s, f), f.width, f.height, space, name);
  return { width: f.width, height: f.height, channels, data };
}
