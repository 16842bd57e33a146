/* @ts-self-types="./jsquash_webp_wasm.d.ts" */
// The package's compiled libwebp decoder, reached through the module graph (a source-phase
// import), so it loads the same way from a local checkout, from a URL and from the npm cache,
// with nothing fetched or read from a path at run time. JavaScript, because TypeScript's parser
// does not accept `import source` yet.
// deno lint applies no-import-prefix to source-phase imports even with the rule's set off; the
// full specifier is wanted here for the reason given in argparse.ts.
// deno-lint-ignore no-import-prefix
import source webpDecoder from "npm:@jsquash/webp@1.5.0/codec/dec/webp_dec.wasm";

export default webpDecoder;
