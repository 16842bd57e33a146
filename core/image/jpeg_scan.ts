/**
 * Decoding one JPEG scan into the quantised DCT coefficients of each component: sequential
 * Huffman scans (`jdhuff.c`) and the four progressive scan types (`jdphuff.c`: DC first, DC
 * refine, AC first, AC refine, with end-of-band runs), with restart intervals.
 *
 * Coefficients are kept for the whole image (progressive scans refine them in place) in natural
 * (row-major) order, as 16-bit values like libjpeg's `JCOEF`, so overflow on corrupt data wraps
 * the same way.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { BitReader, type HuffmanTable } from "./jpeg_huffman.ts";

/** One component of a frame and its coefficient storage. */
export interface FrameComponent {
  readonly id: number;
  /** Horizontal and vertical sampling factors (1..4). */
  readonly h: number;
  readonly v: number;
  /** Quantisation table slot. */
  readonly tq: number;
  /** Samples the component really has: ceil(width * h / maxH) by ceil(height * v / maxV). */
  readonly width: number;
  readonly height: number;
  /** Blocks stored per row and column (padded to whole MCUs). */
  readonly blocksPerLine: number;
  readonly blocksPerColumn: number;
  /** Blocks a non-interleaved scan covers: ceil(width / 8) by ceil(height / 8). */
  readonly usedBlocksPerLine: number;
  readonly usedBlocksPerColumn: number;
  /** `blocksPerLine * blocksPerColumn * 64` coefficients. */
  readonly coefs: Int16Array;
}

/** The frame geometry a scan needs. */
export interface FrameLayout {
  readonly mcusPerLine: number;
  readonly mcusPerColumn: number;
  readonly progressive: boolean;
}

/** One SOS header, resolved against the tables in force. */
export interface ScanHeader {
  readonly components: readonly FrameComponent[];
  /** DC and AC tables per scan component (null where the scan type does not use one). */
  readonly dc: readonly (HuffmanTable | null)[];
  readonly ac: readonly (HuffmanTable | null)[];
  /** Spectral selection and successive approximation (Ss, Se, Ah, Al). */
  readonly ss: number;
  readonly se: number;
  readonly ah: number;
  readonly al: number;
  /** MCUs per restart interval (0: none). */
  readonly restartInterval: number;
}

/** Zigzag index -> natural index, padded with 63s so corrupt runs past the end stay in bounds. */
// deno-fmt-ignore
const NATURAL_ORDER = new Int32Array([
  0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5,
  12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21, 28,
  35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51,
  58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
  63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
]);

/** The natural index of each zigzag position (0..63), for DQT tables. */
export function naturalIndex(k: number): number {
  return NATURAL_ORDER[k];
}

/** Mutable per-scan state: DC predictors and the end-of-band run. */
interface State {
  readonly pred: Int32Array;
  eobrun: number;
}

type BlockDecoder = (
  r: BitReader,
  s: ScanHeader,
  st: State,
  ci: number,
  coefs: Int16Array,
  off: number,
) => void;

const baseline: BlockDecoder = (r, s, st, ci, coefs, off) => {
  const dc = s.dc[ci]!;
  const ac = s.ac[ci]!;
  const t = r.decode(dc);
  // 32-bit wrap as libjpeg's unsigned add; the 16-bit store truncates like its JCOEF cast.
  const v = (st.pred[ci] + r.receiveExtend(t)) | 0;
  st.pred[ci] = v;
  coefs[off] = v;
  for (let k = 1; k < 64; k++) {
    const f = r.fastAc(ac);
    if (f !== 0) {
      k += (f >> 8) & 15;
      coefs[off + NATURAL_ORDER[k]] = f >> 16;
      continue;
    }
    const rs = r.decode(ac);
    const size = rs & 15;
    const run = rs >> 4;
    if (size !== 0) {
      k += run;
      coefs[off + NATURAL_ORDER[k]] = r.receiveExtend(size);
    } else {
      if (run !== 15) break;
      k += 15;
    }
  }
};

const dcFirst: BlockDecoder = (r, s, st, ci, coefs, off) => {
  const t = r.decode(s.dc[ci]!);
  const v = (st.pred[ci] + r.receiveExtend(t)) | 0;
  st.pred[ci] = v;
  coefs[off] = v << s.al;
};

const dcRefine: BlockDecoder = (r, s, _st, _ci, coefs, off) => {
  if (r.getBit()) coefs[off] |= 1 << s.al;
};

const acFirst: BlockDecoder = (r, s, st, ci, coefs, off) => {
  if (st.eobrun > 0) {
    st.eobrun--;
    return;
  }
  const ac = s.ac[ci]!;
  for (let k = s.ss; k <= s.se; k++) {
    const f = r.fastAc(ac);
    if (f !== 0) {
      k += (f >> 8) & 15;
      coefs[off + NATURAL_ORDER[k]] = (f >> 16) * (1 << s.al);
      continue;
    }
    const rs = r.decode(ac);
    const size = rs & 15;
    const run = rs >> 4;
    if (size !== 0) {
      k += run;
      coefs[off + NATURAL_ORDER[k]] = r.receiveExtend(size) * (1 << s.al);
    } else if (run === 15) {
      k += 15;
    } else {
      st.eobrun = (1 << run) + r.getBits(run) - 1;
      break;
    }
  }
};

const acRefine: BlockDecoder = (r, s, st, ci, coefs, off) => {
  const p1 = 1 << s.al;
  const m1 = -1 << s.al;
  const se = s.se;
  let k = s.ss;
  if (st.eobrun === 0) {
    const ac = s.ac[ci]!;
    for (; k <= se; k++) {
      const rs = r.decode(ac);
      let run = rs >> 4;
      let value = 0;
      if ((rs & 15) !== 0) {
        // Only size 1 is legal here; libjpeg warns and reads one bit for any other size.
        value = r.getBit() ? p1 : m1;
      } else if (run !== 15) {
        st.eobrun = (1 << run) + r.getBits(run);
        break;
      }
      // Skip `run` zero coefficients, adding a correction bit to each nonzero one passed.
      do {
        const z = off + NATURAL_ORDER[k];
        const c = coefs[z];
        if (c !== 0) {
          if (r.getBit() && (c & p1) === 0) coefs[z] = c >= 0 ? c + p1 : c + m1;
        } else if (--run < 0) break;
        k++;
      } while (k <= se);
      if (value !== 0) coefs[off + NATURAL_ORDER[k]] = value;
    }
  }
  if (st.eobrun > 0) {
    // Inside an end-of-band run: only correction bits for the coefficients already nonzero.
    for (; k <= se; k++) {
      const z = off + NATURAL_ORDER[k];
      const c = coefs[z];
      if (c !== 0 && r.getBit() && (c & p1) === 0) coefs[z] = c >= 0 ? c + p1 : c + m1;
    }
    st.eobrun--;
  }
};

/** Check a progressive scan's parameters as libjpeg does (JERR_BAD_PROGRESSION). */
function checkProgression(s: ScanHeader, name: string): void {
  const dcBand = s.ss === 0;
  const bad = (dcBand ? s.se !== 0 : s.ss > s.se || s.se > 63 || s.components.length !== 1) ||
    (s.ah !== 0 && s.al !== s.ah - 1) || s.al > 13;
  if (bad) {
    throw new LorakitError(
      `${name}: corrupt progressive JPEG (invalid scan: Ss=${s.ss} Se=${s.se} Ah=${s.ah} Al=${s.al} for ${s.components.length} component(s))`,
    );
  }
}

function pickDecoder(f: FrameLayout, s: ScanHeader, name: string): BlockDecoder {
  if (!f.progressive) return baseline;
  checkProgression(s, name);
  if (s.ss === 0) return s.ah === 0 ? dcFirst : dcRefine;
  return s.ah === 0 ? acFirst : acRefine;
}

/**
 * Decode the entropy-coded data of one scan starting at `pos` (just after the SOS header) into
 * the components' coefficients. Returns the position of the marker that follows the scan.
 */
export function decodeScan(
  data: Uint8Array,
  pos: number,
  frame: FrameLayout,
  scan: ScanHeader,
  name: string,
): number {
  const decode = pickDecoder(frame, scan, name);
  const comps = scan.components;
  const st: State = { pred: new Int32Array(comps.length), eobrun: 0 };
  const r = new BitReader(data, pos, name);
  const single = comps.length === 1;
  const c0 = comps[0];
  const perLine = single ? c0.usedBlocksPerLine : frame.mcusPerLine;
  const total = perLine * (single ? c0.usedBlocksPerColumn : frame.mcusPerColumn);
  const ri = scan.restartInterval;
  for (let n = 0; n < total; n++) {
    if (ri > 0 && n > 0 && n % ri === 0) {
      // Restart: byte-align, expect RSTn, and reset the predictors and the band run.
      const m = r.finish();
      const code = data[m + 1];
      r.pos = m < data.length && code >= 0xd0 && code <= 0xd7 ? m + 2 : m;
      st.pred.fill(0);
      st.eobrun = 0;
    }
    const row = Math.floor(n / perLine);
    const col = n - row * perLine;
    if (single) {
      decode(r, scan, st, 0, c0.coefs, (row * c0.blocksPerLine + col) * 64);
      continue;
    }
    for (let ci = 0; ci < comps.length; ci++) {
      const c = comps[ci];
      for (let v = 0; v < c.v; v++) {
        const base = (row * c.v + v) * c.blocksPerLine + col * c.h;
        for (let h = 0; h < c.h; h++) decode(r, scan, st, ci, c.coefs, (base + h) * 64);
      }
    }
  }
  return r.finish();
}
