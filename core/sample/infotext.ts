/**
 * AUTOMATIC1111's "parameters" infotext, which A1111, ComfyUI, Civitai and image browsers read
 * from a PNG's tEXt chunk:
 *
 *     prompt <lora:name:0.8>
 *     Negative prompt: negative
 *     Steps: 8, Sampler: Euler a, CFG scale: 7.0, Seed: 1, Size: 512x512, Model: name, ...
 *
 * Values containing `,`, `:` or a newline are JSON-quoted (A1111's `quote`); LoRAs appear as
 * `<lora:name:multiplier>` in the prompt and, with hashes, as `Lora hashes: "name: hash, ..."`.
 * `parseInfotext` implements A1111's `parse_generation_parameters` (without the defaults A1111
 * fills in for absent keys) so writing and reading round-trip.
 *
 * @module
 */
import { resolveSampler, type SamplerName } from "./sampler_registry.ts";

/** A LoRA applied during generation. */
export interface InfotextLora {
  /** Name as A1111 refers to it (file name without extension, or `ss_output_name`). */
  name: string;
  multiplier: number;
  /** First 12 hex digits of `sshs_model_hash` (A1111's short "addnet" hash), if known. */
  hash?: string;
}

/** What an image was generated with. */
export interface GenerationParameters {
  prompt: string;
  negativePrompt?: string;
  steps: number;
  /** kohya `--sampler` value (written under A1111's name where the algorithm matches). */
  sampler: string;
  cfgScale: number;
  seed: number;
  width: number;
  height: number;
  model?: string;
  modelHash?: string;
  /** `--clip_skip` (written when above 1, as A1111 does). */
  clipSkip?: number;
  /** img2img strength (A1111's "Denoising strength"). */
  denoisingStrength?: number;
  /** kohya's `--negative_scale` (no A1111 equivalent; written as "Negative scale"). */
  negativeScale?: number | null;
  loras?: readonly InfotextLora[];
  /** Written as "Version". */
  version?: string;
}

/** A1111 sampler labels of the kohya samplers that run the same algorithm. */
const A1111_SAMPLERS: Partial<Record<SamplerName, string>> = {
  ddim: "DDIM",
  pndm: "PLMS",
  lms: "LMS",
  euler: "Euler",
  euler_a: "Euler a",
  heun: "Heun",
  dpm_2: "DPM2",
  dpm_2_a: "DPM2 a",
  "dpmsolver++": "DPM++ 2M",
};

/** The infotext label of a kohya sampler (its A1111 name, else the kohya name). */
export function samplerLabel(sampler: string): string {
  const name = resolveSampler(sampler);
  return A1111_SAMPLERS[name] ?? name;
}

/** The kohya sampler of an infotext label, or null when it is none of ours. */
export function samplerFromLabel(label: string): SamplerName | null {
  for (const [k, v] of Object.entries(A1111_SAMPLERS)) if (v === label) return k as SamplerName;
  try {
    return resolveSampler(label);
  } catch {
    return null;
  }
}

/** Python's `str(float)` for the values A1111 writes as floats (7 -> "7.0"). */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/** A1111's `quote`: JSON-quote values holding `,`, `:` or a newline. */
export function quote(text: string): string {
  return /[,:\n]/.test(text) ? JSON.stringify(text) : text;
}

/** The "parameters" text for a generated image. */
export function formatInfotext(p: GenerationParameters): string {
  let prompt = p.prompt;
  for (const l of p.loras ?? []) {
    const tag = `<lora:${l.name}:${l.multiplier}>`;
    if (!prompt.includes(`<lora:${l.name}:`)) prompt += (prompt ? " " : "") + tag;
  }
  const params: [string, string | null][] = [
    ["Steps", String(p.steps)],
    ["Sampler", samplerLabel(p.sampler)],
    ["CFG scale", pyFloat(p.cfgScale)],
    ["Seed", String(p.seed)],
    ["Size", `${p.width}x${p.height}`],
    ["Model hash", p.modelHash ?? null],
    ["Model", p.model ?? null],
    ["Clip skip", p.clipSkip !== undefined && p.clipSkip > 1 ? String(p.clipSkip) : null],
    [
      "Denoising strength",
      p.denoisingStrength !== undefined ? String(p.denoisingStrength) : null,
    ],
    [
      "Negative scale",
      p.negativeScale !== undefined && p.negativeScale !== null ? pyFloat(p.negativeScale) : null,
    ],
  ];
  const hashes = (p.loras ?? []).filter((l) => l.hash);
  if (hashes.length > 0) {
    params.push(["Lora hashes", hashes.map((l) => `${l.name}: ${l.hash}`).join(", ")]);
  }
  params.push(["Version", p.version ?? null]);
  const line = params.filter(([, v]) => v !== null).map(([k, v]) => `${k}: ${quote(v!)}`)
    .join(", ");
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : "";
  return `${prompt}${negative}\n${line}`.trim();
}

const RE_IMAGE_SIZE = /^(\d+)x(\d+)$/;
const KEY_CHAR = /[\w \-/]/;
const WORD_CHAR = /\w/;
const SPACE = /\s/;
const LINE_BREAK = /[\n\r\u2028\u2029]/;

/**
 * The `key: value` pairs of a line, exactly as A1111's `re_param`
 * (`\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)`, every match in turn) finds them, in
 * time linear in the line: the regex itself re-scans the rest of the line from every position, so
 * a 100 KB line without a colon took minutes. A key is a whole run of key characters followed by
 * `:`; a value is a quoted string followed by `,` or the end, else everything up to the next `,`.
 */
function paramPairs(line: string): [string, string][] {
  const n = line.length;
  // runEnd[i] / spaceEnd[i]: where the run of key characters / of spaces starting at i ends.
  const runEnd = new Int32Array(n + 1);
  const spaceEnd = new Int32Array(n + 1);
  runEnd[n] = spaceEnd[n] = n;
  for (let i = n - 1; i >= 0; i--) {
    runEnd[i] = KEY_CHAR.test(line[i]) ? runEnd[i + 1] : i;
    spaceEnd[i] = SPACE.test(line[i]) ? spaceEnd[i + 1] : i;
  }
  const out: [string, string][] = [];
  for (let p = 0; p < n;) {
    const k = spaceEnd[p];
    const keyEnd = k < n ? runEnd[k] : k;
    if (k >= n || !WORD_CHAR.test(line[k]) || keyEnd - k < 2 || line[keyEnd] !== ":") {
      p++;
      continue;
    }
    const v = spaceEnd[keyEnd + 1];
    let value: string | null = null;
    let end = n;
    if (line[v] === '"') {
      let j = v + 1;
      while (j < n && line[j] !== '"') {
        if (line[j] !== "\\") j++;
        else if (j + 1 < n && !LINE_BREAK.test(line[j + 1])) j += 2;
        else j = n;
      }
      if (j < n && j > v + 1 && (j + 1 === n || line[j + 1] === ",")) {
        value = line.slice(v, j + 1);
        end = j + 1 === n ? n : j + 2;
      }
    }
    if (value === null) {
      const comma = line.indexOf(",", v);
      value = line.slice(v, comma < 0 ? n : comma);
      end = comma < 0 ? n : comma + 1;
    }
    out.push([line.slice(k, keyEnd), value]);
    p = end;
  }
  return out;
}

/** A1111's `unquote`: JSON-decode a quoted value, or keep it when that fails. */
function unquote(text: string): string {
  if (text.length === 0 || text[0] !== '"' || text[text.length - 1] !== '"') return text;
  try {
    const v = JSON.parse(text);
    return typeof v === "string" ? v : text;
  } catch {
    return text;
  }
}

/**
 * A1111's `parse_generation_parameters`: "Prompt", "Negative prompt", and every `key: value` of
 * the last line (when it holds at least 3); `WxH` values split into `key-1` and `key-2`.
 */
export function parseInfotext(text: string): Record<string, string> {
  const res: Record<string, string> = {};
  const lines = text.trim().split("\n");
  let last = lines.pop() ?? "";
  let pairs = paramPairs(last);
  if (pairs.length < 3) {
    lines.push(last);
    last = "";
    pairs = [];
  }
  let prompt = "", negative = "", doneWithPrompt = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith("Negative prompt:")) {
      doneWithPrompt = true;
      line = line.slice(16).trim();
    }
    if (doneWithPrompt) negative += (negative === "" ? "" : "\n") + line;
    else prompt += (prompt === "" ? "" : "\n") + line;
  }
  res["Prompt"] = prompt;
  res["Negative prompt"] = negative;
  for (const [k, value] of pairs) {
    let v = value;
    if (v.length > 0 && v[0] === '"' && v[v.length - 1] === '"') v = unquote(v);
    const size = RE_IMAGE_SIZE.exec(v);
    if (size) {
      res[`${k}-1`] = size[1];
      res[`${k}-2`] = size[2];
    } else res[k] = v;
  }
  return res;
}

/**
 * `<lora:name:multiplier>` tags of a prompt, as A1111's extra-networks syntax writes them: the
 * matches of `<lora:([^:>]+)(?::([^:>]+))?[^>]*>`, found in linear time (the regex backtracks
 * quadratically over a long tag that never closes).
 */
export function loraTags(prompt: string): { name: string; multiplier: number }[] {
  const out: { name: string; multiplier: number }[] = [];
  const runEnd = (from: number) => {
    let j = from;
    while (j < prompt.length && prompt[j] !== ":" && prompt[j] !== ">") j++;
    return j;
  };
  let close = -1;
  for (let i = prompt.indexOf("<lora:"); i >= 0; i = prompt.indexOf("<lora:", i + 1)) {
    // The first ">" after the tag's start; it only moves forward, so all the searches are linear.
    if (close < i + 6) close = prompt.indexOf(">", i + 6);
    if (close < 0) break; // no later tag can close either
    const nameEnd = runEnd(i + 6);
    if (nameEnd === i + 6) continue;
    let multiplier = 1;
    if (prompt[nameEnd] === ":") {
      const mulEnd = runEnd(nameEnd + 1);
      if (mulEnd > nameEnd + 1) multiplier = Number(prompt.slice(nameEnd + 1, mulEnd));
    }
    out.push({ name: prompt.slice(i + 6, nameEnd), multiplier });
    i = close;
  }
  return out;
}
