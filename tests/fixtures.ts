/**
 * Where the golden fixtures live: `$LORAKIT_FIXTURES`, else `../shared/fixtures` beside the checkout.
 * Golden tests call `fixturesDir()` and skip (with one line saying so) when it returns null.
 */
const here = new URL(".", import.meta.url).pathname;

let warned = false;

/** Absolute path of the fixtures folder, or null when none exists. */
export function fixturesDir(): string | null {
  const candidates = [Deno.env.get("LORAKIT_FIXTURES"), `${here}../../shared/fixtures`];
  for (const c of candidates) {
    if (!c) continue;
    try {
      if (Deno.statSync(c).isDirectory) return c.replace(/\/$/, "");
    } catch { /* not there */ }
  }
  if (!warned) {
    warned = true;
    console.log(
      "golden fixtures not found ($LORAKIT_FIXTURES or ../shared/fixtures): golden tests skipped",
    );
  }
  return null;
}

/** Path of one fixture file or folder, or null (test skipped) when fixtures are absent. */
export function fixture(rel: string): string | null {
  const dir = fixturesDir();
  return dir === null ? null : `${dir}/${rel}`;
}
