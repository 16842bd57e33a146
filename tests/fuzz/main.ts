/**
 * `deno task fuzz`: the long fuzzing campaign over every parser of untrusted input.
 *
 *     deno task fuzz [--cases N] [--seed S] [--only a,b] [--case I [--dump FILE]] [--reasons]
 *
 * `--cases` per target (default 100000), `--seed` (default: from the clock, printed), `--only`
 * some targets, `--case I` replays one case (with `--dump` writing its input to a file),
 * `--reasons` lists which checks rejected the inputs. One line per target: cases, accepted,
 * rejected, slowest case, largest allocation, failures; exit status 1 on any failure.
 *
 * @module
 */
import { failureLines, runTarget, summaryLine } from "./campaign.ts";
import { caseRng } from "./rng.ts";
import { makeInput } from "./target.ts";
import { loadTarget, TARGET_NAMES } from "./targets.ts";

/** `--name value` / `--name=value` options and `--flag` switches. */
function parseFlags(argv: string[]): Record<string, string | boolean> {
  const out: Record<string, string | boolean> = {};
  const switches = new Set(["reasons", "help"]);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([\w-]+)(?:=(.*))?$/.exec(argv[i]);
    if (!m) {
      console.error(`fuzz: unexpected argument '${argv[i]}'`);
      Deno.exit(2);
    }
    if (switches.has(m[1])) out[m[1]] = true;
    else if (m[2] !== undefined) out[m[1]] = m[2];
    else if (i + 1 < argv.length) out[m[1]] = argv[++i];
    else {
      console.error(`fuzz: --${m[1]} needs a value`);
      Deno.exit(2);
    }
  }
  return out;
}

const flags = parseFlags(Deno.args);
const str = (k: string): string | undefined =>
  typeof flags[k] === "string" ? flags[k] as string : undefined;
const args = {
  help: flags.help === true,
  reasons: flags.reasons === true,
  seed: str("seed"),
  cases: str("cases"),
  only: str("only"),
  case: str("case"),
  dump: str("dump"),
  "hang-ms": str("hang-ms"),
};
if (args.help) {
  console.log(
    "deno task fuzz [--cases N] [--seed S] [--only a,b] [--case I [--dump FILE]] [--reasons]\n" +
      `targets: ${TARGET_NAMES.join(", ")}`,
  );
  Deno.exit(0);
}
const int = (v: string | undefined, d: number, what: string): number => {
  if (v === undefined) return d;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 0) {
    console.error(`--${what}: expected a non-negative integer, found '${v}'`);
    Deno.exit(2);
  }
  return n;
};
const seed = int(args.seed, Date.now() % 2 ** 32, "seed");
const only = args.only ? args.only.split(",").map((s) => s.trim()) : [...TARGET_NAMES];
for (const name of only) {
  if (!TARGET_NAMES.includes(name)) {
    console.error(`--only: unknown target '${name}'; expected one of ${TARGET_NAMES.join(", ")}`);
    Deno.exit(2);
  }
}
const replay = args.case === undefined ? null : int(args.case, 0, "case");
const cases = replay === null ? int(args.cases, 100_000, "cases") : 1;
const hangMs = int(args["hang-ms"], 1000, "hang-ms");

if (replay !== null && args.dump) {
  if (only.length !== 1) {
    console.error("--dump: name one target with --only");
    Deno.exit(2);
  }
  const t = await loadTarget(only[0]);
  const input = await makeInput(t, await t.seeds(), caseRng(seed, replay));
  await Deno.writeFile(args.dump, input);
  console.log(
    `wrote ${input.length} bytes of ${only[0]} case ${replay} (seed ${seed}) to ${args.dump}`,
  );
}

console.log(`fuzz: seed ${seed}, ${cases} cases per target, targets ${only.join(", ")}`);
let failed = 0;
for (const name of only) {
  const t = await loadTarget(name);
  const report = await runTarget(name, {
    seed,
    cases,
    from: replay ?? 0,
    hangMs,
    reasons: args.reasons,
    onProgress: cases >= 20_000
      ? (done) => {
        if (Deno.stdout.isTerminal()) {
          Deno.stdout.writeSync(new TextEncoder().encode(`\r  ${name}: ${done}/${cases}`));
        }
      }
      : undefined,
  });
  if (cases >= 20_000 && Deno.stdout.isTerminal()) {
    Deno.stdout.writeSync(new TextEncoder().encode("\r"));
  }
  console.log(summaryLine(report) + `; bound: ${t.boundText}`);
  for (const line of failureLines(report)) console.log(line);
  if (args.reasons) {
    const top = [...report.reasons].sort((a, b) => b[1] - a[1]).slice(0, 25);
    for (const [k, n] of top) console.log(`    ${String(n).padStart(7)}  ${k}`);
  }
  failed += report.failures.length;
}
if (failed > 0) {
  console.log(`fuzz: ${failed} failure(s)`);
  Deno.exit(1);
}
