/**
 * Finding and reading a CLIP vocabulary on disk: a tokenizer folder (`vocab.json` +
 * `merges.txt`), a diffusers model folder (its `tokenizer/`), a Hugging Face hub cache entry
 * (`models--<owner>--<name>/snapshots/<rev>/`), or a hub repo id looked up in the local cache.
 * Nothing is ever downloaded.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";
import { baseName, dirName, exists, isDirectory, joinPath, listDir, readText } from "../io/fs.ts";
import { type BpeModel, bpeModelFromMerges, parseMerges } from "./vocab_bpe.ts";

/** Where to look for a Hugging Face hub cache, when a repo id is named. */
export interface HubCacheOptions {
  /** The hub cache folder (the one holding `models--*`); default from the environment. */
  hfHubDir?: string;
}

/** A folder found to hold a vocabulary, and every place that was tried to find it. */
export interface VocabularyLocation {
  folder: string | null;
  searched: string[];
}

/**
 * Read an environment variable where the runtime has one. `core/` stays on web-standard APIs:
 * in a browser (no `Deno`) or without `--allow-env` this returns undefined and the caller must
 * pass `hfHubDir` explicitly.
 */
function envVar(name: string): string | undefined {
  const deno = (globalThis as { Deno?: { env?: { get(key: string): string | undefined } } }).Deno;
  try {
    return deno?.env?.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The Hugging Face hub cache folder as `huggingface_hub` resolves it: `$HF_HUB_CACHE`, else
 * `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
 * Null when none of these can be known.
 */
export function defaultHubCacheDir(): string | null {
  const hub = envVar("HF_HUB_CACHE");
  if (hub) return hub;
  const home = envVar("HF_HOME");
  if (home) return joinPath(home, "hub");
  const xdg = envVar("XDG_CACHE_HOME");
  if (xdg) return joinPath(xdg, "huggingface", "hub");
  const user = envVar("HOME") ?? envVar("USERPROFILE");
  return user ? joinPath(user, ".cache", "huggingface", "hub") : null;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** Snapshot folders of a hub cache entry, the one `refs/main` names first. */
async function snapshots(repoDir: string): Promise<string[]> {
  const dir = joinPath(repoDir, "snapshots");
  if (!(await isDirectory(dir))) return [];
  const names = (await listDir(dir)).filter((e) => e.isDirectory).map((e) => e.name);
  let main = "";
  try {
    main = (await readText(joinPath(repoDir, "refs", "main"))).trim();
  } catch { /* no refs/main: keep the sorted order */ }
  names.sort((a, b) => (a === main ? -1 : b === main ? 1 : 0));
  return names.map((n) => joinPath(dir, n));
}

/** Candidate folders for a cache entry or a model folder: itself and its `tokenizer/`. */
async function candidatesUnder(root: string): Promise<string[]> {
  const out = [root, joinPath(root, "tokenizer")];
  for (const snap of await snapshots(root)) out.push(snap, joinPath(snap, "tokenizer"));
  return out;
}

/**
 * Find the folder holding `merges.txt` for a path or a hub repo id. A path may be a tokenizer
 * folder, a diffusers model folder, a hub cache entry (`models--owner--name`), or a
 * `merges.txt`/`vocab.json` file. A string that is not an existing path but looks like
 * `owner/name` is looked up in the hub cache.
 */
export async function locateVocabulary(
  path: string,
  options: HubCacheOptions = {},
): Promise<VocabularyLocation> {
  let candidates: string[];
  if (await isDirectory(path)) {
    candidates = await candidatesUnder(path);
  } else if (await exists(path)) {
    const name = baseName(path);
    candidates = name === "merges.txt" || name === "vocab.json" ? [dirName(path)] : [];
    if (candidates.length === 0) {
      return { folder: null, searched: [`${path} (a file, but not merges.txt or vocab.json)`] };
    }
  } else if (REPO_ID.test(path)) {
    const hub = options.hfHubDir ?? defaultHubCacheDir();
    if (hub === null) {
      return {
        folder: null,
        searched: [`${path} (no such path; the Hugging Face cache location is unknown)`],
      };
    }
    candidates = await candidatesUnder(joinPath(hub, `models--${path.replace("/", "--")}`));
    candidates.unshift(path);
  } else {
    return { folder: null, searched: [`${path} (no such file or folder)`] };
  }
  const searched: string[] = [];
  for (const c of candidates) {
    searched.push(c);
    if (await exists(joinPath(c, "merges.txt"))) return { folder: c, searched };
  }
  return { folder: null, searched };
}

/** The pad token a tokenizer folder's config names (`pad_token`, a string or `{content}`). */
async function configuredPadToken(folder: string): Promise<string | undefined> {
  for (const file of ["special_tokens_map.json", "tokenizer_config.json"]) {
    const path = joinPath(folder, file);
    if (!(await exists(path))) continue;
    let json: unknown;
    try {
      json = JSON.parse(await readText(path));
    } catch (e) {
      if (e instanceof LorakitError) throw e;
      throw new LorakitError(`${path}: expected JSON, found text that does not parse`);
    }
    const pad = (json as { pad_token?: unknown } | null)?.pad_token;
    if (typeof pad === "string") return pad;
    const content = (pad as { content?: unknown } | null)?.content;
    if (typeof content === "string") return content;
  }
  return undefined;
}

/** Parse a `vocab.json`: an object mapping token strings to non-negative integer ids. */
function parseVocabJson(text: string, path: string): Map<string, number> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new LorakitError(`${path}: expected a JSON object of token -> id, found invalid JSON`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new LorakitError(`${path}: expected a JSON object of token -> id, found ${typeof json}`);
  }
  const map = new Map<string, number>();
  for (const [token, id] of Object.entries(json as Record<string, unknown>)) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0) {
      throw new LorakitError(
        `${path}: token ${JSON.stringify(token)} should map to a non-negative integer id, ` +
          `found ${JSON.stringify(id)}`,
      );
    }
    map.set(token, id);
  }
  return map;
}

/**
 * Read the vocabulary of a tokenizer folder. `merges.txt` is required; without `vocab.json` the
 * vocabulary is derived from the merges (CLIP's construction). The folder's configured pad
 * token is recorded so an SD2 tokenizer folder pads with `!` on its own.
 */
export async function readVocabularyFolder(folder: string): Promise<BpeModel> {
  const mergesPath = joinPath(folder, "merges.txt");
  const vocabPath = joinPath(folder, "vocab.json");
  const merges = parseMerges(await readText(mergesPath), mergesPath);
  const encoder = (await exists(vocabPath))
    ? parseVocabJson(await readText(vocabPath), vocabPath)
    : null;
  return bpeModelFromMerges(merges, encoder, folder, await configuredPadToken(folder));
}

/** Locate and read a vocabulary; a clear LorakitError lists the places searched. */
export async function loadVocabulary(
  path: string,
  options: HubCacheOptions = {},
): Promise<BpeModel> {
  const { folder, searched } = await locateVocabulary(path, options);
  if (folder === null) {
    throw new LorakitError(
      `no CLIP tokenizer vocabulary (merges.txt, optionally with vocab.json) found for ` +
        `"${path}"; searched: ${searched.join(", ")}. Name a tokenizer folder, a diffusers ` +
        `model folder, or a Hugging Face repo id already in the local cache, or name none to ` +
        `use the built-in CLIP vocabulary.`,
    );
  }
  return await readVocabularyFolder(folder);
}
