/**
 * JPEG entropy-coded data: Huffman tables (DHT) and the bit reader that walks a scan.
 *
 * The reader follows libjpeg's `jdhuff.c` on damaged data, since the goal is Pillow's pixels:
 * a marker met inside a scan stops the input and zero bits are fed from then on (libjpeg's
 * "premature end of data segment" warning), and a code that matches no table entry decodes as
 * symbol 0. Only running off the end of the file is an error: Pillow refuses a truncated file
 * ("image file is truncated"), so we do too, once a scan has really used bits that are not there.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** Codes up to this many bits are decoded by one table lookup; longer ones by the slow path. */
const LOOKAHEAD = 9;

/** A decoding table built from one DHT entry. */
export interface HuffmanTable {
  /** `(length << 8) | symbol` for each LOOKAHEAD-bit prefix starting with a short code, else 0. */
  readonly lookup: Uint16Array;
  /** Largest code of each length 1..16 (index = length), -1 when there is none. */
  readonly maxCode: Int32Array;
  /** Offset to add to a code of each length to index `values`. */
  readonly valOffset: Int32Array;
  /** The symbols, in code order. */
  readonly values: Uint8Array;
  /**
   * For AC use: a LOOKAHEAD-bit prefix holding a whole (run, size) code *and* its `size` value
   * bits maps to `(value << 16) | (run << 8) | bitsUsed`; 0 elsewhere (decode the usual way).
   * Most AC coefficients of photographs decode in one lookup this way (as stb_image does).
   */
  readonly fastAc: Int32Array;
}

/**
 * Build a table from the 16 code-length counts and the symbols of a DHT segment (the canonical
 * code assignment of JPEG Annex C). `what` names the table in errors.
 */
export function buildHuffmanTable(
  counts: Uint8Array,
  symbols: Uint8Array,
  what: string,
): HuffmanTable {
  const maxCode = new Int32Array(18).fill(-1);
  const valOffset = new Int32Array(18);
  const lookup = new Uint16Array(1 << LOOKAHEAD);
  let code = 0;
  let k = 0;
  for (let len = 1; len <= 16; len++) {
    const n = counts[len - 1];
    if (n > 0) {
      valOffset[len] = k - code;
      for (let i = 0; i < n; i++, k++, code++) {
        if (len <= LOOKAHEAD) {
          // Every LOOKAHEAD-bit pattern that begins with this code decodes to it.
          const shift = LOOKAHEAD - len;
          const base = code << shift;
          const entry = (len << 8) | symbols[k];
          for (let j = 0; j < 1 << shift; j++) lookup[base + j] = entry;
        }
      }
      maxCode[len] = code - 1;
    }
    // A code of this length that would need more than `len` bits means a corrupt table.
    if (code > 1 << len) throw new LorakitError(`${what}: corrupt JPEG Huffman table`);
    code <<= 1;
  }
  maxCode[17] = 0x7fffffff; // sentinel: stop the slow search after 16 bits
  const fastAc = new Int32Array(1 << LOOKAHEAD);
  for (let i = 0; i < 1 << LOOKAHEAD; i++) {
    const e = lookup[i];
    if (e === 0) continue;
    const len = e >> 8;
    const size = e & 15;
    if (size === 0 || len + size > LOOKAHEAD) continue;
    const raw = (i >> (LOOKAHEAD - len - size)) & ((1 << size) - 1);
    const value = raw < 1 << (size - 1) ? raw - (1 << size) + 1 : raw;
    fastAc[i] = value * 65536 + (((e & 0xff) >> 4) << 8) + len + size;
  }
  return { lookup, maxCode, valOffset, values: symbols.slice(), fastAc };
}

/** Sequential reader of one scan's entropy-coded bytes (with 0xFF00 stuffing removed). */
export class BitReader {
  /** Next byte of `data` to read. */
  pos: number;
  /** Bit buffer: the low `bits` bits are unread, most significant first. */
  private buf = 0;
  private bits = 0;
  /** True once a marker (or the end of the file) stopped the input. */
  private stopped = false;
  /** Zero bytes fed after the end of the file (to tell "truncated" from "unused padding"). */
  private padBytes = 0;

  constructor(private readonly data: Uint8Array, pos: number, private readonly name: string) {
    this.pos = pos;
  }

  /** Refill to at least 25 bits, feeding zeros after a marker or the end of the data. */
  private fill(): void {
    const data = this.data;
    while (this.bits <= 24) {
      let b = 0;
      if (!this.stopped) {
        if (this.pos >= data.length) {
          this.stopped = true;
        } else {
          b = data[this.pos];
          if (b !== 0xff) this.pos++;
          else if (data[this.pos + 1] === 0) this.pos += 2; // stuffed 0xFF
          else {
            // A marker (or 0xFF fill bytes before one): stop here and leave it unread.
            this.stopped = true;
            b = 0;
          }
        }
        if (this.stopped && this.pos >= data.length) this.padBytes++;
      } else if (this.pos >= data.length) this.padBytes++;
      this.buf = (this.buf << 8) | b;
      this.bits += 8;
    }
  }

  /** Read `n` (0..16) bits as an unsigned number. */
  getBits(n: number): number {
    if (n === 0) return 0;
    if (this.bits < n) this.fill();
    this.bits -= n;
    return (this.buf >>> this.bits) & ((1 << n) - 1);
  }

  /** Read one bit. */
  getBit(): number {
    if (this.bits < 1) this.fill();
    this.bits--;
    return (this.buf >>> this.bits) & 1;
  }

  /** Read `n` bits and sign-extend them the JPEG way (HUFF_EXTEND); 0 bits give 0. */
  receiveExtend(n: number): number {
    if (n === 0) return 0;
    if (this.bits < n) this.fill();
    this.bits -= n;
    const v = (this.buf >>> this.bits) & ((1 << n) - 1);
    return v < 1 << (n - 1) ? v - (1 << n) + 1 : v;
  }

  /**
   * Decode one AC (run, size) symbol and its value in one step when the table's `fastAc` entry
   * covers the next bits: returns that entry (see HuffmanTable.fastAc) with the bits consumed,
   * or 0 with nothing consumed.
   */
  fastAc(t: HuffmanTable): number {
    if (this.bits < 16) this.fill();
    const e = t.fastAc[(this.buf >>> (this.bits - LOOKAHEAD)) & ((1 << LOOKAHEAD) - 1)];
    if (e !== 0) this.bits -= e & 0xff;
    return e;
  }

  /** Decode one Huffman symbol. */
  decode(t: HuffmanTable): number {
    if (this.bits < 16) this.fill();
    const e = t.lookup[(this.buf >>> (this.bits - LOOKAHEAD)) & ((1 << LOOKAHEAD) - 1)];
    if (e !== 0) {
      this.bits -= e >> 8;
      return e & 0xff;
    }
    // Longer codes: compare the next len bits against the largest code of each length.
    let len = LOOKAHEAD + 1;
    let code = (this.buf >>> (this.bits - len)) & ((1 << len) - 1);
    while (len <= 16 && code > t.maxCode[len]) {
      len++;
      code = (this.buf >>> (this.bits - len)) & ((1 << len) - 1);
    }
    if (len > 16) {
      // libjpeg: "Corrupt JPEG data: bad Huffman code"; it skips the bits and yields 0.
      this.bits -= 16;
      return 0;
    }
    this.bits -= len;
    return t.values[t.valOffset[len] + code];
  }

  /**
   * End of a scan or restart interval: drop the unread bits of the current byte and fail if the
   * scan used bits past the end of the file. Returns the position of the next marker.
   */
  finish(): number {
    const unread = this.bits;
    if (this.padBytes * 8 > unread) {
      throw new LorakitError(`${this.name}: truncated JPEG (the image data ends early)`);
    }
    this.buf = 0;
    this.bits = 0;
    this.stopped = false;
    this.padBytes = 0;
    // Bytes read ahead are entropy data (a marker stops the reading), so the next marker is at
    // or after the read position.
    return nextMarker(this.data, this.pos);
  }
}

/**
 * Position of the next marker (its 0xFF) at or after `p`, skipping entropy bytes, stuffed 0xFF00
 * pairs and fill bytes; `data.length` when there is none.
 */
export function nextMarker(data: Uint8Array, p: number): number {
  let i = p;
  while (i < data.length) {
    if (data[i] === 0xff) {
      let j = i + 1;
      while (j < data.length && data[j] === 0xff) j++;
      if (j >= data.length) return data.length;
      if (data[j] !== 0) return j - 1;
      i = j + 1;
    } else i++;
  }
  return data.length;
}
