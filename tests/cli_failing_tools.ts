/**
 * The command line's entry point with a table of tools that fail on purpose, one per kind of
 * failure the error reporting tells apart; run as a child process by cli_outputs_test.ts.
 */
import { LorakitError } from "../core/errors.ts";
import { reportEscapedErrors, run, type ToolEntry } from "../cli/main.ts";

const tool = (main: (args: string[]) => Promise<number>): ToolEntry => ({
  about: "fails on purpose",
  load: () => Promise.resolve(main),
});

const TOOLS: Record<string, ToolEntry> = {
  /** A bug: an exception that is not an error of the input. */
  bug: tool(() => Promise.reject(new TypeError("a forced internal error"))),
  /** A bug that escapes the awaited chain: a rejection nobody handles. */
  escaped: tool(async () => {
    void Promise.reject(new RangeError("a forced escaped error"));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    return 0;
  }),
  /** An error of the input. */
  user: tool(() => Promise.reject(new LorakitError("--save_to: a forced input error"))),
  /** An OS refusal that no check turned into a LorakitError. */
  os: tool(async (args) => {
    await Deno.readFile(args[0]);
    return 0;
  }),
  /** Echoes its arguments, to show what a tool receives. */
  echo: tool((args) => {
    console.log(JSON.stringify(args));
    return Promise.resolve(0);
  }),
};

reportEscapedErrors();
Deno.exit(await run(Deno.args, TOOLS));
