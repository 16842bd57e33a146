/**
 * imagescript by its full pinned `npm:` specifier (see argparse.ts for why not an import map).
 *
 * @module
 */
export { Image } from "npm:imagescript@1.3.0";
