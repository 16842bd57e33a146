#!/usr/bin/env bash
# Installs what lorakit needs on a fresh Debian/Ubuntu machine: the software Vulkan driver
# (used when there is no GPU; harmless beside a real one) and Deno, pinned in tools/deno.
# `--bench` also installs the benchmarks' peers: PyTorch and OpenCV from Debian, with OpenBLAS
# (without it Debian's torch and numpy fall back to the reference BLAS, ~1 GFLOP/s).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need+=(libvulkan1)
if [ "${1:-}" = "--bench" ]; then
  for p in python3-torch python3-opencv libopenblas0-pthread; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]} (software Vulkan for WebGPU)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
echo "== installing Deno from npm (tools/deno/package.json pins it)"
npm install --prefix tools/deno --no-audit --no-fund >/dev/null
tools/deno/node_modules/.bin/deno --version | head -1
