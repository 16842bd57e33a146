/**
 * The npm packages lorakit uses are named here, and only here, by full pinned `npm:` specifiers
 * (one module per package, so a tool loads only the packages it needs). An import map in
 * deno.json would serve local runs only: `deno run <url>/cli/main.ts` reads no deno.json beside
 * a remote module, so a bare name like "argparse" would not resolve there. Deno's lint rule
 * `no-import-prefix` (in its "workspace" set, which lorakit does not enable) asks for the import
 * map instead, so it stays off.
 *
 * @module
 */
export { ArgumentParser, SUPPRESS } from "npm:argparse@2.0.1";
