/**
 * The WebGPU device: one per process, requested with the adapter's own limits (the spec defaults
 * are far too small for Stable Diffusion) and `shader-f16` where the adapter has it.
 *
 * @module
 */

/** The device plus what we learned about it. */
export interface Gpu {
  device: GPUDevice;
  /** Adapter description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  description: string;
  /** True when `shader-f16` is enabled: f16 storage and arithmetic in shaders. */
  hasF16: boolean;
  /** True for a software adapter (lavapipe/llvmpipe): tests and benches pick small shapes. */
  isSoftware: boolean;
  limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxComputeWorkgroupsPerDimension: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

/** Raised when no WebGPU adapter is present; the message says how to get one. */
export class NoGpuError extends Error {
  constructor(detail: string) {
    super(
      `No WebGPU adapter found (${detail}). lorakit needs a GPU driver that WebGPU can use ` +
        `(Vulkan, Metal or DX12), or the software Vulkan driver: on Debian/Ubuntu run ` +
        `'apt-get install mesa-vulkan-drivers libvulkan1'. Leave DENO_WEBGPU_BACKEND unset ` +
        `(an empty value hides every adapter).`,
    );
    this.name = "NoGpuError";
  }
}

let pending: Promise<Gpu> | null = null;
let current: Gpu | null = null;

/** The process-wide GPU, created on first use. */
export function getGpu(): Promise<Gpu> {
  if (!pending) pending = createGpu();
  return pending;
}

/** The GPU after `getGpu()` has resolved; throws if it has not been requested yet. */
export function gpuSync(): Gpu {
  if (!current) throw new Error("GPU not initialised: await getGpu() (or initGpu()) first");
  return current;
}

async function createGpu(): Promise<Gpu> {
  if (typeof navigator === "undefined" || !("gpu" in navigator) || !navigator.gpu) {
    throw new NoGpuError("navigator.gpu is missing in this runtime");
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new NoGpuError("requestAdapter() returned null");
  const a = adapter.limits;
  const want = {
    maxBufferSize: a.maxBufferSize,
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: a.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: a.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: a.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupSizeZ: a.maxComputeWorkgroupSizeZ,
    maxComputeWorkgroupsPerDimension: a.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: a.maxStorageBuffersPerShaderStage,
    maxBindGroups: a.maxBindGroups,
  };
  const features: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has("shader-f16");
  if (hasF16) features.push("shader-f16");
  const device = await adapter.requestDevice({ requiredFeatures: features, requiredLimits: want });
  device.addEventListener("uncapturederror", (ev) => {
    const err = (ev as GPUUncapturedErrorEvent).error;
    console.error(`WebGPU error: ${err.message}`);
  });
  const info = adapter.info;
  const description = info.description || info.vendor || "unknown adapter";
  current = {
    device,
    description,
    hasF16,
    isSoftware: /llvmpipe|lavapipe|swiftshader|software/i.test(description) ||
      Boolean((info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter),
    limits: {
      maxBufferSize: Number(want.maxBufferSize),
      maxStorageBufferBindingSize: Number(want.maxStorageBufferBindingSize),
      maxComputeWorkgroupStorageSize: want.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: want.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupsPerDimension: want.maxComputeWorkgroupsPerDimension,
      maxStorageBuffersPerShaderStage: want.maxStorageBuffersPerShaderStage,
    },
  };
  return current;
}
