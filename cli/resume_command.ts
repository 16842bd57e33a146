/**
 * The command line that continues an interrupted train_network run: the user's own arguments with
 * `--resume <state>` in place of any earlier `--resume`, quoted for a POSIX shell, so the Ctrl-C
 * message can be pasted as it is.
 *
 * @module
 */

/** `s` quoted for sh/bash when it needs it. */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replaceAll("'", `'"'"'`)}'`;
}

/** `argv` without `--resume X` / `--resume=X`, then `--resume state`. */
export function resumeArgs(argv: readonly string[], statePath: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--resume") {
      i++;
      continue;
    }
    if (argv[i].startsWith("--resume=")) continue;
    out.push(argv[i]);
  }
  return [...out, "--resume", statePath];
}

/** How this process was started, as a command that starts the same tool again. */
function program(): string {
  let main = "cli/main.ts";
  try {
    const url = new URL(Deno.mainModule);
    if (url.protocol === "file:") {
      const path = decodeURIComponent(url.pathname);
      const cwd = Deno.cwd();
      main = path.startsWith(`${cwd}/`) ? path.slice(cwd.length + 1) : path;
    } else main = url.href;
  } catch {
    // No main module (an embedding): the repository-relative entry point is the best guess.
  }
  return `deno run -A ${shellQuote(main)}`;
}

/** The full command that resumes `tool` from `statePath` with the user's other arguments. */
export function resumeCommand(tool: string, argv: readonly string[], statePath: string): string {
  return [program(), tool, ...resumeArgs(argv, statePath)].map((a, i) =>
    i === 0 ? a : shellQuote(a)
  )
    .join(" ");
}
