/**
 * @jsquash/webp (libwebp built for WebAssembly) by its full pinned `npm:` specifier (see
 * argparse.ts for why not an import map): the decoder's Emscripten factory and its compiled
 * WebAssembly module, which the factory is handed instead of locating the .wasm file itself.
 *
 * @module
 */
export { default as webpDecoderFactory } from "npm:@jsquash/webp@1.5.0/codec/dec/webp_dec.js";
export { default as webpDecoderWasm } from "./jsquash_webp_wasm.js";
