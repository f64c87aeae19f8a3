#!/usr/bin/env bash
# The GPU check of the `cuda` feature, in one go, on a machine with an NVIDIA GPU, its driver
# (580 or later) and PyTorch with CUDA 13 (whose site-packages/nvidia/cu13/lib has the CUDA
# libraries cv loads):
#
#   1. the default job (configs/default.toml) with --device cuda, twice: wall time of each, and
#      whether the fold models, out-of-fold predictions and summary are byte-identical;
#   2. training (and inference) images/s of resnet50 at 224x224 batch 64 and resnet18 at 224x224
#      batch 128, cv-model's `model_timing` against PyTorch eager (benches/torch_models.py) on
#      the same GPU, alternating, ROUNDS rounds.
#
# Build and pack the binaries first, on any machine (no GPU needed):
#   cargo xtask build-cuda --bench        # -> target/cuda/gpu-check/{cv,model_timing}.gz
# then, from the repository root on the GPU machine (with that folder in place):
#   bash tools/cuda/gpu-check.sh
# Results go to $OUT (default target/gpu-check-out): results.md (the table for
# docs/benchmarks.md), results.json, log.txt, gpu.txt, the runs' hashes and summaries.
#
# Knobs (environment): ROUNDS (2), K_TRAIN (10), K_INFER (10), BUDGET_S (540: no new timing round
# starts past it), PYTHON (python3), DEVICE (cuda); CV and MODEL_TIMING (binaries to use instead
# of the packed ones), CASES (resnet50-224,resnet18-224) and EPOCHS (the config's) exist to try
# the script on a CPU: DEVICE=cpu CV=target/release/cv
# MODEL_TIMING=target/release/examples/model_timing CASES=cifar-resnet-20 EPOCHS=1 ROUNDS=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-target/gpu-check-out}
ROUNDS=${ROUNDS:-2}
K_TRAIN=${K_TRAIN:-10}
K_INFER=${K_INFER:-10}
BUDGET_S=${BUDGET_S:-540}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
CASES=${CASES:-resnet50-224,resnet18-224}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
exec > >(tee "$OUT/log.txt") 2>&1
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }
step() { echo "== [$(elapsed) s] $*"; }

# The binaries: given, or unpacked from target/cuda/gpu-check/.
unpack() {
    local packed=target/cuda/gpu-check/$1.gz
    [ -f "$packed" ] || { echo "missing $packed: run \`cargo xtask build-cuda --bench\` first" >&2; exit 1; }
    gzip -dc "$packed" > "$work/$1" && chmod +x "$work/$1" && echo "$work/$1"
}
CV=${CV:-$(unpack cv)}
MODEL_TIMING=${MODEL_TIMING:-$(unpack model_timing)}

# CUDA 13's libraries from PyTorch's wheels (libcuda.so.1 comes with the driver); TF32 off in
# every NVIDIA library, as foldwise's results assume.
if [ "$DEVICE" != cpu ]; then
    nv=$("$PYTHON" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))')
    export LD_LIBRARY_PATH="$nv${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "$OUT/gpu.txt" || true
fi
export NVIDIA_TF32_OVERRIDE=0
{
    echo "cv: $("$CV" --version)"
    "$PYTHON" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
    cat "$OUT/gpu.txt" 2>/dev/null || true
} | tee "$OUT/versions.txt"

# 1. The default job, twice. A failure is recorded and the timings still run.
sets=()
[ -n "${EPOCHS:-}" ] && sets=(--set "training.epochs=$EPOCHS")
for run in a b; do
    step "default job, run $run, on $DEVICE"
    t0=$(date +%s.%N)
    if timeout 240 "$CV" train --config configs/default.toml --device "$DEVICE" --quiet \
        --run-dir "$work/run-$run" "${sets[@]}"; then
        t1=$(date +%s.%N)
        echo "$t0 $t1" | awk '{printf "%.2f\n", $2 - $1}' > "$OUT/default-job-$run.seconds"
        (cd "$work/run-$run" && sha256sum fold-*/model.safetensors oof.csv summary.json) \
            > "$OUT/default-job-$run.sha256"
    else
        echo "default job run $run failed or timed out (rc $?)"
    fi
done
if [ -f "$OUT/default-job-a.sha256" ] && [ -f "$OUT/default-job-b.sha256" ]; then
    mkdir -p "$OUT/default-job"
    cp "$work/run-a/"{summary.md,summary.json,run.json,config.toml} "$OUT/default-job/"
    if cmp -s "$OUT/default-job-a.sha256" "$OUT/default-job-b.sha256"; then
        echo "identical" > "$OUT/default-job.repeat"
    else
        echo "DIFFERENT" > "$OUT/default-job.repeat"
        diff "$OUT/default-job-a.sha256" "$OUT/default-job-b.sha256" || true
    fi
else
    echo "not compared: a run failed" > "$OUT/default-job.repeat"
fi
step "default job: runs $(cat "$OUT/default-job.repeat")"

# 2. images/s, cv and PyTorch alternating.
: > "$OUT/cv.jsonl"
: > "$OUT/torch.jsonl"
for round in $(seq 1 "$ROUNDS"); do
    if [ "$round" -gt 1 ] && [ "$(elapsed)" -gt "$BUDGET_S" ]; then
        step "time budget reached: no round $round"
        break
    fi
    for case in ${CASES//,/ }; do
        step "round $round: $case, cv"
        timeout 120 "$MODEL_TIMING" "$K_TRAIN" "$K_INFER" "$case" "$DEVICE" >> "$OUT/cv.jsonl" \
            || echo "cv $case failed or timed out (rc $?)"
        step "round $round: $case, PyTorch"
        timeout 120 "$PYTHON" crates/cv-model/benches/torch_models.py --cases "$case" \
            --device "$DEVICE" --train-iters "$K_TRAIN" --infer-iters "$K_INFER" >> "$OUT/torch.jsonl" \
            || echo "PyTorch $case failed or timed out (rc $?)"
    done
done

# 3. The table.
"$PYTHON" - "$OUT" "$DEVICE" <<'EOF'
import json, pathlib, statistics, sys

out, device = pathlib.Path(sys.argv[1]), sys.argv[2]
def cases(name):
    rows = {}
    for line in (out / name).read_text().splitlines():
        row = json.loads(line)
        rows.setdefault(row["case"], []).append(row)
    return rows
cv, torch = cases("cv.jsonl"), cases("torch.jsonl")
def read(name, missing=None):
    path = out / name
    return path.read_text().strip() if path.exists() else missing
seconds = [read(f"default-job-{r}.seconds") for r in "ab"]
summary = read("default-job/summary.json")
results = {
    "versions": read("versions.txt"),
    "default_job": {
        "seconds": [float(s) if s else None for s in seconds],
        "repeat": read("default-job.repeat"),
        "summary": json.loads(summary) if summary else None,
    },
    "cases": [],
}
lines = [
    "| case | cv images/s (median) | PyTorch images/s (median) | cv / PyTorch | rounds | cv repeats its loss |",
    "| --- | --- | --- | --- | --- | --- |",
]
for case, ours in cv.items():
    theirs = torch.get(case, [])
    a = statistics.median(r["images_per_s"] for r in ours)
    b = statistics.median(r["images_per_s"] for r in theirs) if theirs else float("nan")
    ratio = a / b if theirs else float("nan")
    same = all(r["parameters"] == t["parameters"] for r in ours for t in theirs)
    repeat = all(r.get("deterministic", True) for r in ours)
    bits = sorted({r["loss_bits"] for r in ours if "loss_bits" in r})
    repeats = ("yes" if repeat else "NO") + f" ({', '.join(bits)})" if bits else "–"
    results["cases"].append({"case": case, "cv": [r["images_per_s"] for r in ours],
                             "torch": [t["images_per_s"] for t in theirs], "ratio": ratio,
                             "same_parameters": same, "deterministic": repeat, "loss_bits": bits})
    lines.append(f"| {case} | {a:.1f} | {b:.1f} | {ratio:.2f}× | {len(ours)} / {len(theirs)} | "
                 f"{repeats} |"
                 + ("" if same else " PARAMETER COUNTS DIFFER"))
job = results["default_job"]
times = " and ".join(f"{s:.1f} s" if s is not None else "failed" for s in job["seconds"])
accuracy = job["summary"]["mean"].get("accuracy", float("nan")) if job["summary"] else float("nan")
lines += ["", f"Default job on {device}: {times}; the two runs' fold models, oof.csv and "
          f"summary.json: {job['repeat']}; mean validation accuracy {accuracy:.4f}.", "",
          "```", results["versions"], "```"]
(out / "results.md").write_text("\n".join(lines) + "\n")
(out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
print("\n".join(lines))
EOF
step "done: $OUT/results.md"
