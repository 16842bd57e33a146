/**
 * yaml by its full pinned `npm:` specifier (see argparse.ts for why not an import map).
 *
 * @module
 */
export { parse } from "npm:yaml@2.6.1";
