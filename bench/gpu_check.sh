#!/usr/bin/env bash
# One prepared GPU check, end to end in under 10 minutes on one GPU (issue #18):
#   1. environment: nvidia-smi, torch / CUDA versions, GPU count;
#   2. bench/gpu_check.py: the paper preset's networks (VGG16 + AlexNet W_E, Inception-v3;
#      random weights, nothing downloaded) trained N steps with AMP off and on: images/s and
#      peak GPU memory; the loss of one fixed batch on CUDA against the CPU (rel. tol. 1e-4);
#   3. with more than one GPU: the real trainer on every GPU under torchrun (DDP, NCCL):
#      `torchrun -m csoa_nb.engine.train --preset paper --set dataset=synthetic` for one short
#      epoch (12 generated classes, random weights: nothing downloaded, amp on); its run folder
#      must be written once, by rank 0, with world_size = the GPU count;
#   4. a summary line; any failed check stops the script with a non-zero status.
#
# Usage (from anywhere; PYTHON defaults to the checkout's .venv, else python3):
#   bench/gpu_check.sh [--dry-run] [--steps N] [--backbones vgg16 ...]
#       [--amp-dtype auto|bf16|fp16]
# --dry-run: the whole script on the CPU (CUDA hidden) with the slim backbone, 64 px, a few
# steps, and the trainer's smoke preset on 2 gloo processes for the multi-process part, in
# about a minute: the same report.
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
    echo "skipped: 1 GPU (DDP needs two or more)"
fi
if (( nproc_per_node > 0 )); then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if (( dry_run )); then
        run_args=(--preset smoke --method csoa --set epochs=1 --set device=cpu)
    else
        amp_dtype=auto
        for (( i = 0; i < ${#args[@]}; i++ )); do
            if [[ "${args[i]}" == --amp-dtype ]]; then amp_dtype="${args[i + 1]}"; fi
        done
        run_args=(--preset paper --method csoa --set dataset=synthetic --set num_classes=12
                  --set images_per_class=16 --set test_per_class=4 --set val_images=0
                  --set epochs=1 --set pretrained= --set embedding_weights=
                  --set amp=true --set amp_dtype="$amp_dtype" --set num_workers=2)
    fi
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$nproc_per_node" \
        -m csoa_nb.engine.train "${run_args[@]}" --no-progress --set data_root="$work/data" \
        --set output_dir="$work/runs" --set results_dirs= > "$work/log.txt" 2>&1 || {
        tail -40 "$work/log.txt" >&2
        echo "gpu_check: the trainer under torchrun failed (log above)" >&2
        exit 1
    }
    "$PYTHON" - "$work/runs" "$nproc_per_node" <<'PY'
import json, math, sys
from pathlib import Path
runs, world = Path(sys.argv[1]), int(sys.argv[2])
folders = [p for p in runs.iterdir() if (p / "results.json").is_file()]
assert len(folders) == 1, f"expected one run folder under {runs}, found {folders}"
results = json.loads((folders[0] / "results.json").read_text())
config = json.loads((folders[0] / "config.json").read_text())
epochs = [json.loads(line) for line in (folders[0] / "metrics.jsonl").read_text().splitlines()]
metrics = results["metrics"]
ok = (results["world_size"] == world == config["world_size"] and len(epochs) == config["epochs"]
      and all(math.isfinite(v) for v in metrics.values()))
print(f"RESULT trainer world_size={results['world_size']} amp={config['amp']} "
      f"epoch_time_s={epochs[-1]['epoch_time_s']:.1f} loss={epochs[-1]['loss_total']:.4f} "
      f"top1_loc_err={metrics['top1_loc_err']:.2f} num_images={metrics['num_images']:.0f} "
      f"{'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
PY
fi

echo "== summary"
echo "wall time: $(( $(date +%s) - started )) s"
if (( dry_run )); then
    echo "gpu_check: all checks passed (dry run)"
else
    echo "gpu_check: all checks passed"
fi
