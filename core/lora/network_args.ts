/**
 * A LoRA network's typed settings beyond its rank and alpha (kohya's network args, parsed by
 * core/kohya/network_args.ts), and how they shape the module list and the block learning rates.
 *
 * @module
 */
import { type BlockLrArgs, blockLrWeights } from "./block_lr.ts";
import type { UnetKeyLayout } from "../io/keymap_unet.ts";
import type { ModuleListOptions, NetworkModuleName } from "./modules.ts";

/** A network's settings beyond rank and alpha, kohya's network args typed. Absent keys are undefined. */
export interface NetworkArgs extends BlockLrArgs {
  /** The key/value strings in the order given (last one wins), as kohya stores them. */
  raw: Record<string, string>;
  convDim?: number;
  convAlpha?: number;
  blockDims?: number[];
  blockAlphas?: number[];
  convBlockDims?: number[];
  convBlockAlphas?: number[];
  rankDropout?: number;
  moduleDropout?: number;
  dropout?: number;
  /** DyLoRA's rank unit (default 1). */
  unit?: number;
  loraplusLrRatio?: number;
  loraplusUnetLrRatio?: number;
  loraplusTextEncoderLrRatio?: number;
  /** Keys given that this network module accepts but does not use (see above). */
  ignored: string[];
}

/** The network settings that, with its args, define the module list. */
export interface NetworkFlags {
  module?: NetworkModuleName;
  networkDim?: number | null;
  networkAlpha?: number | null;
  trainUnetOnly?: boolean;
  trainTextEncoderOnly?: boolean;
  /** An SDXL model: its U-Net's key layout (23 blocks, SDXL names); absent for SD 1.x/2.x. */
  sdxl?: UnetKeyLayout | null;
}

/**
 * Module-list options and block lr weights from parsed args, as kohya's `create_network` wires
 * them: block lr weights (when any is given) also switch on per-block dims and drop the modules
 * of 0-weight blocks.
 */
export function networkOptions(
  args: NetworkArgs,
  flags: NetworkFlags = {},
  warn: (message: string) => void = () => {},
): { modules: ModuleListOptions; blockLrWeight: number[] | null } {
  const blockLrWeight = (flags.module ?? "networks.lora") === "networks.lora"
    ? blockLrWeights(args, warn, flags.sdxl != null)
    : null;
  const modules: ModuleListOptions = {
    ...flags,
    convDim: args.convDim,
    convAlpha: args.convAlpha,
    blockDims: args.blockDims,
    blockAlphas: args.blockAlphas,
    convBlockDims: args.convBlockDims,
    convBlockAlphas: args.convBlockAlphas,
    blockLrWeight,
  };
  return { modules, blockLrWeight };
}
