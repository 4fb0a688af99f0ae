#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU: the probe and quick presets with --use-gpu at small
# sizes, then a report (bench/gpu_report.py) with examples/s per training, activation texts/s,
# peak GPU memory, trials per GPU with fractional GPUs and MFU of the fine-tunes.
#
#   bash bench/gpu_check.sh            # from the repository root; about 5 minutes on one H100
#
# Self-contained: installs nothing, uses the repo's venv ($W2S_VENV, else ./.venv, else
# ../main/.venv, else the python on PATH), offline models (MiniLM and mpnet from their PyPI
# packages; HF_HUB_OFFLINE=1), data from $W2S_DATA_DIR or ../shared/data. Writes everything under
# $OUT (if set) or a temp dir: gpu_report.md / .json, each run's log, nvidia-smi samples.
# Every step has its own time limit, so the whole check stays under 8 minutes.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT_DIR=${OUT:-$(mktemp -d /tmp/w2s-gpu-check.XXXXXX)}
mkdir -p "$OUT_DIR"
WORK=$(mktemp -d /tmp/w2s-gpu-work.XXXXXX)
export W2S_DATA_DIR=${W2S_DATA_DIR:-$REPO/../shared/data}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled
export W2S_MODEL_CACHE=${W2S_MODEL_CACHE:-$WORK/model-cache}
TASK=${W2S_GPU_CHECK_TASK:-sst2}

for venv in "${W2S_VENV:-}" "$REPO/.venv" "$REPO/../main/.venv"; do
  if [ -n "$venv" ] && [ -x "$venv/bin/python" ]; then PY="$venv/bin/python"; break; fi
done
PY=${PY:-$(command -v python3)}

log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT_DIR/gpu_check.log"; }

if ! command -v nvidia-smi >/dev/null 2>&1; then
  log "no nvidia-smi: this check needs an NVIDIA GPU"; exit 1
fi
[ -d "$W2S_DATA_DIR" ] || { log "no data dir $W2S_DATA_DIR (set W2S_DATA_DIR)"; exit 1; }

GPU_NAME=$("$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA"; print(torch.cuda.get_device_name(0))')
log "python $PY; GPU: $GPU_NAME; $(nvidia-smi --query-gpu=count,memory.total --format=csv,noheader | head -1)"
"$PY" -c 'import w2s_ray, sys; print("w2s_ray from", w2s_ray.__file__)' | tee -a "$OUT_DIR/gpu_check.log"

# nvidia-smi samples every 500 ms: memory per GPU, and the processes holding GPU memory
nvidia-smi --query-gpu=timestamp,index,memory.used --format=csv,noheader,nounits -lms 500 > "$OUT_DIR/gpu.csv" &
SMI_GPU=$!
nvidia-smi --query-compute-apps=timestamp,pid,gpu_uuid,used_gpu_memory --format=csv,noheader,nounits -lms 500 \
  > "$OUT_DIR/apps.csv" 2>/dev/null &
SMI_APPS=$!
cleanup() { kill "$SMI_GPU" "$SMI_APPS" 2>/dev/null || true; }
trap cleanup EXIT

search() {  # search NAME LIMIT_S ARGS...
  local name=$1 limit=$2; shift 2
  log "$name: python -m w2s_ray.search $* (limit ${limit}s)"
  local start=$SECONDS rc=0
  timeout --signal=INT --kill-after=20 "$limit" "$PY" -m w2s_ray.search --task "$TASK" --use-gpu \
    --storage "$WORK/$name" --tracking-uri "sqlite:///$WORK/$name.db" --name "$name" --confirm-seeds 0 "$@" \
    > "$OUT_DIR/$name.log" 2>&1 || rc=$?
  log "$name: exit $rc after $((SECONDS - start)) s (log: $OUT_DIR/$name.log)"
  [ "$rc" -eq 0 ] || tail -n 30 "$OUT_DIR/$name.log" | tee -a "$OUT_DIR/gpu_check.log"
  return 0
}

# probe: activations of MiniLM and mpnet extracted on the GPU, then probe trials in-process
search probe 200 --preset probe --num-samples 20 --n-a 1000 --n-b 1000 --n-val 400 --n-test 1000
# quick: MiniLM fine-tunes, four trials at once on one GPU (0.25 GPU each)
search quick 260 --preset quick --num-samples 4 --max-concurrent 4 --gpus-per-worker 0.25 \
  --n-a 600 --n-b 600 --n-val 300 --n-test 500

cleanup
"$PY" bench/gpu_report.py --gpu-name "$GPU_NAME" --samples "$OUT_DIR" --out "$OUT_DIR/gpu_report" \
  --run "probe=$WORK/probe" --run "quick=$WORK/quick" | tee -a "$OUT_DIR/gpu_check.log"
log "report: $OUT_DIR/gpu_report.md ($SECONDS s in all)"
