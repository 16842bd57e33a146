/**
 * Bind group layouts, pipeline layouts and bind groups, shared by every kernel with the same
 * binding signature ("rrwu:112": two read-only storage buffers, one read-write, a 112-byte uniform
 * block).
 * A bind group is keyed by its signature, the identities of its buffers and the size of its
 * uniform block; the uniform block itself is bound at a dynamic offset into the submit's uniform
 * arena, so the same group serves every dispatch on the same buffers. The buffer pool hands a
 * repeated training step the same buffers in the same order, so from the second step on almost
 * every group comes from here.
 *
 * @module
 */

import { bufferId } from "./pool.ts";

/** Entries kept before the cache starts over (each holds a handful of buffer references). */
const MAX_GROUPS = 1 << 16;

export class BindCache {
  private layouts = new Map<string, GPUBindGroupLayout>();
  private pipelineLayouts = new Map<string, GPUPipelineLayout>();
  private groups = new Map<string, GPUBindGroup>();
  /** Bind groups created, and dispatches served from the cache. */
  created = 0;
  hits = 0;

  constructor(private device: GPUDevice) {}

  /** The bind group layout of a signature; the uniform block (if any) takes a dynamic offset. */
  layout(sig: string): GPUBindGroupLayout {
    let l = this.layouts.get(sig);
    if (!l) {
      const entries: GPUBindGroupLayoutEntry[] = [];
      const [kinds, uniformBytes] = sig.split(":");
      for (let i = 0; i < kinds.length; i++) {
        const c = kinds[i];
        entries.push({
          binding: i,
          visibility: GPUShaderStage.COMPUTE,
          buffer: c === "u"
            ? { type: "uniform", hasDynamicOffset: true, minBindingSize: Number(uniformBytes) }
            : { type: c === "w" ? "storage" : "read-only-storage" },
        });
      }
      l = this.device.createBindGroupLayout({ entries, label: sig });
      this.layouts.set(sig, l);
    }
    return l;
  }

  pipelineLayout(sig: string): GPUPipelineLayout {
    let l = this.pipelineLayouts.get(sig);
    if (!l) {
      l = this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(sig)] });
      this.pipelineLayouts.set(sig, l);
    }
    return l;
  }

  /** The bind group of `buffers` (+ the uniform arena window of `uniformBytes`) for `sig`. */
  group(sig: string, buffers: GPUBuffer[], arena: GPUBuffer | null, uniformBytes: number) {
    let key = sig;
    for (let i = 0; i < buffers.length; i++) key += "," + bufferId(buffers[i]);
    if (arena) key += "|" + bufferId(arena);
    const hit = this.groups.get(key);
    if (hit) {
      this.hits++;
      return hit;
    }
    const entries: GPUBindGroupEntry[] = buffers.map((buffer, binding) => ({
      binding,
      resource: { buffer },
    }));
    if (arena) {
      entries.push({
        binding: buffers.length,
        resource: { buffer: arena, offset: 0, size: uniformBytes },
      });
    }
    if (this.groups.size >= MAX_GROUPS) this.groups.clear();
    const g = this.device.createBindGroup({ layout: this.layout(sig), entries });
    this.groups.set(key, g);
    this.created++;
    return g;
  }

  /** Forget every bind group (after buffers were destroyed). */
  clear(): void {
    this.groups.clear();
  }
}
