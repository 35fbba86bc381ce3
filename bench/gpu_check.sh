#!/usr/bin/env bash
# One prepared GPU check, end to end in under 10 minutes on one GPU (issue #18):
#   1. environment: nvidia-smi, torch / CUDA versions, GPU count;
#   2. bench/gpu_check.py: the paper preset's networks (VGG16 + AlexNet W_E, Inception-v3;
#      random weights, nothing downloaded) trained N steps with AMP off and on: images/s and
#      peak GPU memory; the loss of one fixed batch on CUDA against the CPU (rel. tol. 1e-4);
#   3. with more than one GPU: the DDP step on every GPU under torchrun (the model's DDP step
#      until the trainer is wired to DDP, see DDP_PLAN.md);
#   4. a summary line; any failed check stops the script with a non-zero status.
#
# Usage (from anywhere; PYTHON defaults to the checkout's .venv, else python3):
#   bench/gpu_check.sh [--dry-run] [--steps N] [--ddp-steps N] [--backbones vgg16 ...]
#       [--amp-dtype auto|bf16|fp16]
# --dry-run: the whole script on the CPU (CUDA hidden) with the slim backbone, 64 px, a few
# steps and 2 gloo processes for the multi-process part, in under a minute: the same report.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

dry_run=0
args=()
for arg in "$@"; do
    case "$arg" in
        --dry-run) dry_run=1 ;;
        -h|--help) grep -E '^#( |$)' "$0" | sed -E 's/^# ?//'; exit 0 ;;
        *) args+=("$arg") ;;
    esac
done
if (( dry_run )); then
    export CUDA_VISIBLE_DEVICES=""
    args+=(--dry-run)
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi

started=$(date +%s)
echo "== environment"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'), host: $(hostname), cpus: $(getconf _NPROCESSORS_ONLN)"
if command -v nvidia-smi >/dev/null 2>&1 && (( ! dry_run )); then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
else
    echo "nvidia-smi: not used ($( (( dry_run )) && echo 'dry run' || echo 'not found'))"
fi
gpus=$("$PYTHON" - <<'PY'
import torch
count = torch.cuda.device_count() if torch.cuda.is_available() else 0
print(f"torch {torch.__version__} | cuda {torch.version.cuda or 'none'} | gpus {count}")
PY
)
echo "$gpus"
gpu_count=${gpus##* }

if (( ! dry_run )) && (( gpu_count < 1 )); then
    echo "gpu_check: PyTorch sees no GPU; install a CUDA build of torch, or run --dry-run" >&2
    exit 1
fi

"$PYTHON" bench/gpu_check.py "${args[@]}"

echo "== multi-process"
if (( dry_run )); then
    nproc_per_node=2
elif (( gpu_count > 1 )); then
    nproc_per_node=$gpu_count
else
    nproc_per_node=0
    echo "skipped: 1 GPU (the DDP step needs two or more)"
fi
if (( nproc_per_node > 0 )); then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc_per_node" \
        bench/gpu_check.py --ddp "${args[@]}"
fi

echo "== summary"
echo "wall time: $(( $(date +%s) - started )) s"
if (( dry_run )); then
    echo "gpu_check: all checks passed (dry run)"
else
    echo "gpu_check: all checks passed"
fi
