/**
 * Dense linear algebra for the LoRA tools: truncated SVD (`svdTopK`, randomized with an exact
 * fallback), the full spectrum of singular values (`singularValues`), lorakit's SVD sign
 * convention (`svdSignCanonical`) and torch-compatible `quantile`.
 *
 * @module
 */
export { type SvdTopK, svdTopK, type SvdTopKOptions } from "./svd.ts";
export { singularValues } from "./spectrum.ts";
export { svdSignCanonical } from "./sign.ts";
export { quantile } from "./quantile.ts";
export { type SymEig, symEig } from "./host_eig.ts";
