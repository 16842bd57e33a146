/**
 * The one file-system adapter of `core/`. Everything in `core/` that touches files goes through
 * these functions, so the rest of `core/` stays on web-standard APIs.
 *
 * @module
 */
import { LorakitError } from "../errors.ts";

/** A file opened for random-access reads (positional, so concurrent reads never race). */
export interface RandomAccessFile {
  readonly path: string;
  readonly size: number;
  /** Read exactly `length` bytes at `offset`; throws a LorakitError naming the file if short. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Read exactly `target.length` bytes at `offset` into `target`, allocating nothing, so callers
   * can reuse one buffer or fill a mapped GPU staging buffer. Optional: in-memory files may omit
   * it (see {@link readIntoFrom}).
   */
  readInto?(offset: number, target: Uint8Array): Promise<void>;
  close(): void;
}

/** `file.readInto` when the file has it, else `file.read` and a copy. */
export async function readIntoFrom(
  file: RandomAccessFile,
  offset: number,
  target: Uint8Array,
): Promise<void> {
  if (file.readInto !== undefined) await file.readInto(offset, target);
  else target.set(await file.read(offset, target.length));
}

/** Open `path` for reading. A missing file is a LorakitError naming it. */
export async function openRead(path: string): Promise<RandomAccessFile> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new LorakitError(`${path}: file not found`);
    throw new LorakitError(`${path}: cannot open for reading (${(e as Error).message})`);
  }
  const size = (await file.stat()).size;
  let closed = false;
  const check = (offset: number, length: number) => {
    if (offset < 0 || length < 0 || offset + length > size) {
      throw new LorakitError(
        `${path}: read of ${length} bytes at offset ${offset} is outside the file (${size} bytes); the file is truncated or corrupt`,
      );
    }
  };
  // Seek + read on one handle is not atomic: reads are queued so that two in flight at once
  // cannot interleave and return each other's bytes.
  let queue: Promise<unknown> = Promise.resolve();
  const fill = (offset: number, out: Uint8Array): Promise<void> => {
    const run = queue.then(async () => {
      await file.seek(offset, Deno.SeekMode.Start);
      let got = 0;
      while (got < out.length) {
        const n = await file.read(out.subarray(got));
        if (n === null || n === 0) {
          throw new LorakitError(`${path}: unexpected end of file at byte ${offset + got}`);
        }
        got += n;
      }
    });
    queue = run.catch(() => {});
    return run;
  };
  return {
    path,
    size,
    async read(offset: number, length: number): Promise<Uint8Array> {
      check(offset, length);
      const out = new Uint8Array(length);
      await fill(offset, out);
      return out;
    },
    async readInto(offset: number, target: Uint8Array): Promise<void> {
      check(offset, target.length);
      await fill(offset, target);
    },
    close() {
      if (!closed) {
        closed = true;
        file.close();
      }
    },
  };
}

/** Whole file as bytes. */
export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new LorakitError(`${path}: file not found`);
    throw new LorakitError(`${path}: cannot read (${(e as Error).message})`);
  }
}

/** Whole file as UTF-8 text; invalid UTF-8 is an error naming the file. */
export async function readText(path: string): Promise<string> {
  const bytes = await readBytes(path);
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new LorakitError(`${path}: expected UTF-8 text, found invalid byte sequences`);
  }
}

/** True if a file or directory exists at `path`. */
export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** True if `path` is a directory. */
export async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** Names of the entries of a directory (files and folders), sorted. */
export async function listDir(path: string): Promise<{ name: string; isDirectory: boolean }[]> {
  const out: { name: string; isDirectory: boolean }[] = [];
  try {
    for await (const e of Deno.readDir(path)) {
      out.push({ name: e.name, isDirectory: e.isDirectory });
    }
  } catch (e) {
    throw new LorakitError(`${path}: cannot list directory (${(e as Error).message})`);
  }
  out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

/** Create a directory and its parents; an OS refusal is a LorakitError naming the path. */
export async function makeDir(path: string): Promise<void> {
  try {
    await Deno.mkdir(path, { recursive: true });
  } catch (e) {
    throw new LorakitError(`${path}: cannot create the folder (${osReason(e)})`);
  }
}

/** The OS's one-line reason ("Read-only file system (os error 30)"), without the call. */
function osReason(e: unknown): string {
  return ((e as Error).message ?? String(e)).replace(/: [a-z]+ '.*'$/, "");
}

/**
 * Check before long work that files can be written in folder `path`: a read-only disk, a missing
 * permission or a file in the way fails in milliseconds, not after the work. Nothing is left
 * behind: a missing folder is not created, its nearest existing ancestor is probed instead.
 * `what` names the flag for the message, e.g. "--output_dir".
 */
export async function checkWritableDir(path: string, what: string): Promise<void> {
  const fail = (reason: string): never => {
    throw new LorakitError(`${what}: cannot write there: ${reason}`);
  };
  let dir = path;
  for (;;) {
    const info = await Deno.stat(dir).catch((e) => e as Error);
    if (!(info instanceof Error)) {
      if (!info.isDirectory) fail(`${dir} is a file, not a folder`);
      break;
    }
    if (!(info instanceof Deno.errors.NotFound)) fail(`${dir}: ${osReason(info)}`);
    const parent = dirName(dir);
    if (parent === dir || parent === ".") {
      dir = ".";
      break;
    }
    dir = parent;
  }
  await probeWrite(dir, fail);
}

/**
 * Check before long work that file `path` can be written (created or replaced): a folder at the
 * path, a file where a folder of the path should be, a missing folder or an unwritable one fails
 * in milliseconds with `<what>: cannot write there: <path>: <reason>`. Unlike
 * {@link checkWritableDir}, the folder the file goes in must exist, because the tools write into
 * it without creating it. Nothing is created: the folder is probed with a file that is removed
 * at once.
 */
export async function checkWritableFile(path: string, what: string): Promise<void> {
  const fail = (reason: string): never => {
    throw new LorakitError(`${what}: cannot write there: ${path}: ${reason}`);
  };
  const info = await Deno.stat(path).catch((e) => e as Error);
  if (!(info instanceof Error) && info.isDirectory) fail("a folder of that name is in the way");
  const folder = dirName(path);
  // Walk up to the nearest existing ancestor, so that a file in the way is named as such rather
  // than reported as a missing folder below it.
  let dir = folder;
  for (;;) {
    const up = await Deno.stat(dir).catch((e) => e as Error);
    if (!(up instanceof Error)) {
      if (!up.isDirectory) fail(`${dir} is a file, not a folder`);
      break;
    }
    if (!(up instanceof Deno.errors.NotFound) && !(up instanceof Deno.errors.NotADirectory)) {
      fail(`${dir}: ${osReason(up)}`);
    }
    const parent = dirName(dir);
    if (parent === dir) break;
    dir = parent;
  }
  if (dir !== folder) fail(`the folder ${folder} does not exist`);
  await probeWrite(folder, fail);
}

/** Create and remove a small file in `dir`; `fail` reports the OS's refusal. */
async function probeWrite(dir: string, fail: (reason: string) => never): Promise<void> {
  const probe = joinPath(dir, `.lorakit-write-check-${crypto.randomUUID().slice(0, 8)}`);
  try {
    await Deno.writeFile(probe, new Uint8Array(1));
  } catch (e) {
    fail(`${dir}: ${osReason(e)}`);
  }
  await Deno.remove(probe).catch(() => {});
}

/**
 * Write a file atomically: chunks go to `<path>.<random>.tmp` beside the target, which is then
 * renamed over it. An interrupted write never destroys an existing file at `path`; the temporary
 * files a killed write left beside it are removed by the next write that succeeds.
 */
export async function writeAtomic(
  path: string,
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
): Promise<void> {
  const tmp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  let file: Deno.FsFile;
  try {
    file = await Deno.open(tmp, { write: true, create: true, truncate: true });
  } catch (e) {
    throw new LorakitError(`${path}: cannot write (${osReason(e)})`);
  }
  try {
    for await (const chunk of chunks) {
      let off = 0;
      while (off < chunk.length) off += await file.write(chunk.subarray(off));
    }
    await file.syncData();
    file.close();
  } catch (e) {
    try {
      file.close();
    } catch { /* already closed */ }
    await Deno.remove(tmp).catch(() => {});
    // A full disk or a vanished folder mid-write: the old file is intact, the temporary one gone.
    if (e instanceof LorakitError) throw e;
    throw new LorakitError(`${path}: cannot write (${osReason(e)}); the previous file is intact`);
  }
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new LorakitError(`${path}: cannot write (${(e as Error).message})`);
  }
  await removeStaleTemps(path);
}

/** Remove `<path>.<8 hex digits>.tmp` files: what `writeAtomic` leaves when it is killed. */
async function removeStaleTemps(path: string): Promise<void> {
  const base = baseName(path).replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = new RegExp(`^${base}\\.[0-9a-f]{8}\\.tmp$`);
  try {
    for await (const e of Deno.readDir(dirName(path))) {
      if (e.isFile && pattern.test(e.name)) {
        await Deno.remove(joinPath(dirName(path), e.name)).catch(() => {});
      }
    }
  } catch {
    // An unreadable folder keeps its leftovers; the write itself succeeded.
  }
}

/** Write bytes or text atomically. */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeAtomic(path, [bytes]);
}

/** Copy a file (used for associated files such as captions). */
export async function copyFile(from: string, to: string): Promise<void> {
  await Deno.copyFile(from, to);
}

/** Join path segments with `/`, collapsing duplicate separators. */
export function joinPath(...parts: string[]): string {
  return parts.filter((p) => p.length > 0).join("/").replace(/\/+/g, "/");
}

/** Directory part of a path ("." when there is none). */
export function dirName(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** Last segment of a path. */
export function baseName(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed.slice(trimmed.lastIndexOf("/") + 1);
}
