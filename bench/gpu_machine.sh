#!/usr/bin/env bash
# Runs the benchmarks on an offline GPU machine. Expects, beside the checkout: .gl/ (the Vulkan
# loader .debs: libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2) and
# .devtools/deno.xz (the Deno binary, xz-compressed), optionally .devtools/npmcache.tar.xz. Usage: bash bench/gpu_machine.sh SUITE...
# (e.g. `host_path matmul attention unet train_step`: the hardware kernel family is chosen there),
# or `bash bench/gpu_machine.sh sdxl_train_step`: only the full-size SDXL LoRA training step (1024x1024
# px, f16, with and without gradient checkpointing, against PyTorch on CUDA; its peak pool with
# checkpointing is the 12 GB question), table in $OUT/sdxl_train_step.md.
# Results go to $OUT (or ./out).
set -u
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
xz -dc .devtools/deno.xz > /tmp/deno && chmod +x /tmp/deno
export XDG_RUNTIME_DIR=/tmp DENO_DIR=/tmp/denodir
# npm packages cannot be fetched there: .devtools/npmcache.tar.xz is a DENO_DIR's npm/ folder.
mkdir -p "$DENO_DIR" && [ -f .devtools/npmcache.tar.xz ] && tar -C "$DENO_DIR" -xJf .devtools/npmcache.tar.xz
export LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/usr/local/nvidia/lib:${LD_LIBRARY_PATH:-}
icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/nvidia*.json /etc/vulkan/icd.d/nvidia*.json 2>/dev/null | head -1)
[ -n "$icd" ] && export VK_DRIVER_FILES="$icd"
echo "icd: $icd"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p "${OUT:-out}"
/tmp/deno run -A cli/main.ts engine || { echo "no adapter"; exit 3; }
# The features Deno's wgpu grants here (cooperative matrices, subgroups) and a checked GEMM.
for dc in ../shared/perf/device_check.ts shared/perf/device_check.ts; do
  [ -f "$dc" ] && { timeout 120 /tmp/deno run -A "$dc" 2>&1 | tee "${OUT:-out}/device_check.log"; break; }
done
[ -d .devtools/fixtures ] && export LORAKIT_FIXTURES="$PWD/.devtools/fixtures"
export LORAKIT_PEER_PYTHON=$(command -v python3) LORAKIT_PEER_DEVICE=cuda
if [ "${1:-}" = "sdxl_train_step" ]; then
  timeout 420 /tmp/deno run -A bench/train_step.ts "train step sdxl 128x128" \
    > "${OUT:-out}/sdxl_train_step.md" 2> >(tee "${OUT:-out}/sdxl_train_step.log" >&2)
  rc=$?; cat "${OUT:-out}/sdxl_train_step.md"; exit $rc
fi
/tmp/deno run -A bench/main.ts "$@" --out="${OUT:-out}/RESULTS-gpu.md" 2>&1 | tee "${OUT:-out}/bench.log"
