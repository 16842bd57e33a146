/** Running a tool's `main` in-process in tests, with what it prints captured. */

/** Run `main(args)`, capturing stderr (console.error and progress writes); stdout is dropped. */
export async function runCli(
  main: (args: string[]) => Promise<number>,
  args: string[],
): Promise<{ code: number; err: string }> {
  const lines: string[] = [];
  const orig = console.error, origLog = console.log;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  console.log = () => {};
  const stderr = Deno.stderr as { writeSync(b: Uint8Array): number };
  const origWrite = stderr.writeSync;
  stderr.writeSync = (b: Uint8Array) => {
    lines.push(new TextDecoder().decode(b));
    return b.length;
  };
  try {
    return { code: await main(args), err: lines.join("\n") };
  } finally {
    console.error = orig;
    console.log = origLog;
    stderr.writeSync = origWrite;
  }
}

/** The PNG files of a folder, sorted by name. */
export async function pngs(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".png")) out.push(e.name);
  return out.sort();
}
