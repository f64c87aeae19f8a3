#!/usr/bin/env bash
# Type-checks every crate with the `cuda` feature on a machine without a CUDA toolkit, using the
# stand-in nvcc beside this script (CI runs this: a change that breaks the CUDA build goes red).
# It checks only; never link or run what it builds. A real CUDA build: `cargo xtask build-cuda`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
export PATH="$here:$PATH" NVCC="$here/nvcc" CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP=90
# A target folder of its own, so the stand-in's empty kernels never mix with real builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/cuda-check"
cargo check --workspace --all-targets --features cv-model/cuda,cv-data/cuda,cv-seed/cuda
