/**
 * The uniform blocks of the two GEMM skeletons (see kernel_header.ts): shaders/matmul.wgsl
 * (register-tiled) and shaders/matmul_tiled.wgsl (workgroup-tiled, also the convolutions'
 * implicit GEMMs). Their bindings are generated with the rest of each kernel.
 *
 * @module
 */

/** Sizes, then element offsets of operands A and B per output batch (z) and reduced batch (r). */
const GEMM = "M N K nRed: u32; aOut bOut aRed bRed: u32";

/** matmul.wgsl's Params; alpha is read only by the variants that scale. */
export const MATMUL_PARAMS = `${GEMM}; alpha: f32; pad0 pad1 pad2: u32`;

/**
 * matmul_tiled.wgsl's Params: split-K's split count and chunk; outSize, the elements of the
 * whole output (the stride between split-K partial sums); hwD, pixels per image of an NCHW
 * output whose columns run over (image, pixel); the convolution sizes for the implicit-GEMM
 * gathers and the zero padding above and left of its input; alpha multiplies the product (not
 * the bias or residual) in the variants that scale.
 */
export const TILED_PARAMS = `${GEMM}; splits kChunk outSize hwD: u32; ` +
  "cin cout h w ho wo padTop padLeft: u32; alpha: f32; p1 p2 p3: u32";
