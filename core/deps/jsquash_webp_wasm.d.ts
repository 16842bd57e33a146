/** The @jsquash/webp package's compiled libwebp decoder, ready to instantiate. */
declare const webpDecoder: WebAssembly.Module;
export default webpDecoder;
