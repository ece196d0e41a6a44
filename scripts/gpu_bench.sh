#!/usr/bin/env bash
# Every GPU measurement of chapter 6 in one call, within a total time budget (GPU_BENCH_BUDGET_S, default
# 360 s). Results go to $OUT, then are committed under cspnet_lab/results/ so chapter 6 shows them with the
# device they came from.
#
#   OUT=/some/folder bash scripts/gpu_bench.sh        # from the repository root, on a machine with CUDA
#
# * One python process per group of measurements: a crash (a driver error, a killed process) loses that
#   group only; the script goes on with the next and exits 1 at the end, naming what failed.
# * Inside a process, each case is isolated too (an out-of-memory case becomes a row with status "oom"), and
#   rows are written to the result file as they come, so a kill loses at most the group in progress.
# * Each process gets a share of the budget that is left: a soft time cap (no new round starts after
#   60 % of it) and a hard one (`timeout`, the share plus 90 s). Running the script again resumes:
#   finished groups are skipped.
# * Batch sizes are chosen from the GPU's memory (bench.sized_preset): a 15 GiB T4 fits.
#
# Needs only torch (and torchvision for the side-by-side check); cspnet_lab is used from this checkout.
# GPU_BENCH_DRY_RUN=1 runs the same steps on the CPU with two tiny models (the tests do this).
set -uo pipefail
OUT="${OUT:?set OUT to the folder for the result files}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
BUDGET="${GPU_BENCH_BUDGET_S:-360}"
START=$SECONDS
FAILED=()

if [ "${GPU_BENCH_DRY_RUN:-0}" = 1 ]; then
  SMALL=(--device cpu --models densenet121 "cspdensenet121:fusion=csp,part_ratio=0.5" --batch-sizes 2
         --input-sizes 32 --repeats 2 --warmup 0 --min-run-time 0.01 --threads 1)
else
  SMALL=()
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true
fi

# step NAME SHARE_S COMMAND...: one process gets min(SHARE_S, budget left) seconds. Its soft cap (no new
# round after it) is 60 % of that, leaving time for start-up and each case's extras (activation bytes,
# peak memory, profile); its hard cap is the share plus 90 s.
step() {
  local name=$1 share=$2 left cap rc
  shift 2
  left=$(( BUDGET - (SECONDS - START) ))
  if (( left < 20 )); then
    echo "!! $name not started: the time budget is spent"
    FAILED+=("$name (not started)")
    return
  fi
  cap=$(( share < left ? share : left ))
  echo "== $name (soft cap $(( cap * 6 / 10 )) s, hard $(( cap + 90 )) s; $(( SECONDS - START )) s elapsed)"
  timeout --kill-after=10 $(( cap + 90 )) "$@" --time-cap $(( cap * 6 / 10 )) > "$OUT/$name.log" 2>&1
  rc=$?
  tail -n 25 "$OUT/$name.log"
  if (( rc != 0 )); then
    echo "!! $name failed (exit $rc); full log: $OUT/$name.log"
    FAILED+=("$name (exit $rc)")
  fi
}

BENCH=("$PY" -m cspnet_lab bench --resume)
step bench_gpu_fp32 150 "${BENCH[@]}" --preset gpu "${SMALL[@]}" --out "$OUT/bench_gpu_fp32.json"
# bf16 and channels_last each change one thing against fp32 with the default memory format
step bench_gpu_bf16 50 "${BENCH[@]}" --preset gpu --bf16 "${SMALL[@]}" --out "$OUT/bench_gpu_bf16.json"
step bench_gpu_channels_last 50 "${BENCH[@]}" --preset gpu --channels-last "${SMALL[@]}" \
  --out "$OUT/bench_gpu_channels_last.json"
step bench_gpu_201 60 "${BENCH[@]}" --preset gpu201 "${SMALL[@]}" --out "$OUT/bench_gpu_201.json"
if [ "${GPU_BENCH_DRY_RUN:-0}" != 1 ] && "$PY" -c "import torchvision" 2>/dev/null; then
  left=$(( BUDGET - (SECONDS - START) ))
  if (( left >= 20 )); then
    echo "== vs_torchvision"
    timeout --kill-after=10 $(( left + 60 )) "$PY" benchmarks/vs_torchvision.py --device cuda --batch 32 \
      --size 224 --out "$OUT/vs_torchvision_gpu.json" > "$OUT/vs_torchvision.log" 2>&1 \
      || FAILED+=("vs_torchvision (exit $?)")
    tail -n 5 "$OUT/vs_torchvision.log"
  fi
fi
echo "== done in $(( SECONDS - START )) s"
ls -la "$OUT"
if (( ${#FAILED[@]} )); then
  printf '!! failed: %s\n' "${FAILED[@]}"
  exit 1
fi
