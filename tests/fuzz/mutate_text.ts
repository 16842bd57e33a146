/**
 * Text-level mutations for the text formats (TOML, JSON, prompt files, infotext): characters
 * flipped to syntax or odd Unicode, truncation, lines duplicated, dropped or swapped, numbers made
 * huge, deep nesting, format tokens spliced in, and ranges repeated to tens of kilobytes (which
 * exposes quadratic-time parsing).
 *
 * @module
 */
import type { Rng } from "./rng.ts";

/** What a text target adds to the generic text mutations. */
export interface TextOptions {
  /** Fragments of the format (keys, headers, options) to splice in. */
  tokens: readonly string[];
  /** Opening and closing of one nesting level, e.g. `["[", "]"]` or `["{a=", "}"]`. */
  nesting: readonly (readonly [string, string])[];
}

/** Longest text a mutation builds (in UTF-16 units). */
export const MAX_TEXT = 96 * 1024;

const SYNTAX = [..."[]{}()<>=,.:;\"'#\n\r\t\\ -_+|$%*/0123456789eExL"];

/** Characters that trip naive text handling: NUL, BOM, bidi overrides, lone surrogates, ... */
const ODD = [
  "\u0000",
  "\ufeff",
  "\u202e",
  "\u2028",
  "\u0085",
  "\u00a0",
  "\ufffd",
  "\ud800",
  "\udfff",
  "\u0301",
  "\uff15",
  "\u{1f600}",
  "\u{10ffff}",
  "\u0130",
  "\u212a",
  "\x7f",
  "\x1b",
];

const NUMBERS = [
  "0",
  "-0",
  "-1",
  "1e309",
  "-1e309",
  "1e-400",
  "nan",
  "inf",
  "-inf",
  "NaN",
  "Infinity",
  "0x7fffffff",
  "0xffffffffffffffff",
  "2147483648",
  "4294967296",
  "9007199254740993",
  "18446744073709551616",
  "-9223372036854775809",
  "1" + "0".repeat(400),
  "9".repeat(5000),
  "0." + "0".repeat(300) + "1",
  "1_000",
  "01",
  "1.",
  ".5",
];

function at(r: Rng, s: string): number {
  return r.int(s.length + 1);
}

function cap(s: string): string {
  return s.length > MAX_TEXT ? s.slice(0, MAX_TEXT) : s;
}

/** Lines with their terminators kept, so joining gives the text back. */
function lines(s: string): string[] {
  return s.match(/[^\n]*\n|[^\n]+$/g) ?? [];
}

/** One text mutation, picked at random. */
export function mutateText(s: string, r: Rng, o: TextOptions): string {
  const ls = lines(s);
  switch (r.int(12)) {
    case 0: { // character flipped to syntax or odd Unicode
      const i = r.int(Math.max(1, s.length));
      return s.slice(0, i) + r.pick(r.chance(0.7) ? SYNTAX : ODD) + s.slice(i + 1);
    }
    case 1: { // odd Unicode inserted
      const i = at(r, s);
      return s.slice(0, i) + r.pick(ODD).repeat(1 + r.int(3)) + s.slice(i);
    }
    case 2: // truncation
      return s.slice(0, at(r, s));
    case 3: { // a line duplicated (1 to 3 copies)
      if (ls.length === 0) return s;
      const i = r.int(ls.length);
      const line = ls[i].endsWith("\n") ? ls[i] : ls[i] + "\n";
      ls.splice(i, 0, ...Array.from({ length: 1 + r.int(3) }, () => line));
      return ls.join("");
    }
    case 4: { // a line dropped or two swapped
      if (ls.length < 2) return s;
      const i = r.int(ls.length);
      if (r.chance(0.5)) ls.splice(i, 1);
      else {
        const j = r.int(ls.length);
        [ls[i], ls[j]] = [ls[j], ls[i]];
      }
      return ls.join("");
    }
    case 5: { // a number replaced by a huge, tiny or odd one
      const nums = [...s.matchAll(/-?\d[\d._eE+-]*/g)];
      const n = r.pick(NUMBERS);
      if (nums.length === 0) {
        const i = at(r, s);
        return s.slice(0, i) + n + s.slice(i);
      }
      const m = r.pick(nums);
      return s.slice(0, m.index) + n + s.slice(m.index! + m[0].length);
    }
    case 6: { // deep nesting
      const [open, close] = r.pick(o.nesting);
      const depth = r.pick([2, 10, 100, 1000, 5000, 20000]);
      const i = at(r, s);
      const inner = r.chance(0.8) ? open.repeat(depth) + close.repeat(depth) : open.repeat(depth);
      return cap(s.slice(0, i) + inner + s.slice(i));
    }
    case 7:
    case 8: { // a format token spliced in, on its own line or mid-line
      const t = r.pick(o.tokens);
      if (r.chance(0.6) && ls.length > 0) {
        ls.splice(r.int(ls.length + 1), 0, t.endsWith("\n") ? t : t + "\n");
        return ls.join("");
      }
      const i = at(r, s);
      return s.slice(0, i) + t + s.slice(i);
    }
    case 9: { // a range repeated to tens of kilobytes
      const i = r.int(Math.max(1, s.length));
      const unit = r.chance(0.5) ? s.slice(i, i + 1 + r.int(24)) : r.pick(o.tokens);
      if (unit.length === 0) return s;
      const reps = Math.floor((r.chance(0.5) ? MAX_TEXT : r.int(MAX_TEXT)) / unit.length);
      return cap(s.slice(0, i) + unit.repeat(Math.max(1, reps)) + s.slice(i));
    }
    case 10: { // a range deleted
      const i = r.int(Math.max(1, s.length));
      return s.slice(0, i) + s.slice(i + 1 + r.int(32));
    }
    default: { // case and whitespace games: a line upper-cased, or newlines changed to CR/CRLF
      if (r.chance(0.5) && ls.length > 0) {
        const i = r.int(ls.length);
        ls[i] = ls[i].toUpperCase();
        return ls.join("");
      }
      return s.replace(/\n/g, r.pick(["\r\n", "\r", "\n\n", " \n", "\u2028"]));
    }
  }
}
