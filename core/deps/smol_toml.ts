/**
 * smol-toml by its full pinned `npm:` specifier (see argparse.ts for why not an import map).
 *
 * @module
 */
export { parse, stringify } from "npm:smol-toml@1.3.1";
