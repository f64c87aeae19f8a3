#!/usr/bin/env bash
# A real CUDA build of `cv`, and what can be checked of it without a GPU (CI runs this):
#
#   1. `cargo xtask build-cuda`: target/cuda/release/cv with `--features cuda`, compiled and
#      linked against the pinned CUDA 13.0 toolkit from PyPI (candle's kernels built by real nvcc).
#   2. It loads: with the toolkit's real libcudart and, standing in for a driver on a machine with
#      no GPU, the toolkit's link-time stubs (its libcuda returns CUDA_ERROR_STUB_LIBRARY to every
#      call, as NVIDIA's own stub does), every library it needs is found and `cv --version` runs.
#   3. `--device cpu`: a 2-epoch default job gives byte-identical fold models, oof.csv and
#      summary.json to the CPU build's (`target/debug/cv`): the feature changes nothing on a CPU.
#   4. `--device cuda`: one line of error that names the device and the way out (also under
#      RUST_BACKTRACE=1), a failing exit status, and no run folder.
#
# The stubs are put on a loader path here on purpose, in a folder of this script's own: never
# anywhere else. What needs a GPU is `tools/cuda/gpu-check.sh`.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=${CARGO_TARGET_DIR:-target}
cargo xtask build-cuda
# The workspace's features, as `cargo test --workspace` resolves them: after the tests this
# relinks cv alone, where `-p cv-cli` rebuilt its dependencies (2 minutes in CI).
cargo build --workspace --bins
cuda_cv=$target/cuda/release/cv
cpu_cv=$target/debug/cv
toolkit=$target/cuda-toolkit/cuda

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() {
    echo "CUDA smoke test failed: $*" >&2
    exit 1
}

# 2. A loader path with libcudart and the stubs under their sonames.
mkdir "$work/lib"
ln -s "$(realpath "$toolkit/lib/libcudart.so.13")" "$work/lib/"
for stub in "$toolkit"/lib/stubs/lib*.so; do
    soname=$(objdump -p "$stub" | awk '$1 == "SONAME" { print $2 }')
    [ -n "$soname" ] || fail "$stub has no soname"
    ln -s "$(realpath "$stub")" "$work/lib/$soname"
done
missing=$(LD_LIBRARY_PATH=$work/lib ldd "$cuda_cv" | grep 'not found' || true)
[ -z "$missing" ] || fail "$cuda_cv needs libraries the toolkit does not have: $missing"
LD_LIBRARY_PATH=$work/lib "$cuda_cv" --version

# 3. The CPU path of the CUDA build against the CPU build.
job=(train --config configs/default.toml --quiet --set training.epochs=2)
LD_LIBRARY_PATH=$work/lib "$cuda_cv" "${job[@]}" --device cpu --run-dir "$work/cuda-build" >/dev/null
"$cpu_cv" "${job[@]}" --device cpu --run-dir "$work/cpu-build" >/dev/null
for build in cuda-build cpu-build; do
    (cd "$work/$build" && sha256sum fold-*/model.safetensors oof.csv summary.json) >"$work/$build.sha256"
done
diff "$work/cuda-build.sha256" "$work/cpu-build.sha256" ||
    fail "the CUDA build trained differently on the CPU"
echo "--device cpu: $(wc -l <"$work/cpu-build.sha256") files byte-identical to the CPU build's"

# 4. A GPU asked for where there is none.
if error=$(LD_LIBRARY_PATH=$work/lib RUST_BACKTRACE=1 "$cuda_cv" "${job[@]}" --device cuda \
    --run-dir "$work/on-gpu" 2>&1); then
    fail "--device cuda ran without a GPU"
fi
echo "--device cuda: $error"
[ "$(wc -l <<<"$error")" -eq 1 ] || fail "the error is not one line"
[[ $error == *"cannot open cuda:0"*"--device cpu"* ]] || fail "the error does not say what to do"
[ ! -e "$work/on-gpu" ] || fail "--device cuda wrote a run folder"
echo "CUDA smoke test passed"
