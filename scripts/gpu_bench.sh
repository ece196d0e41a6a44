#!/usr/bin/env bash
# All GPU measurements in one call (sized for well under 10 minutes on an H100/H200). Results go to $OUT,
# then are committed under cspnet_lab/results/ so chapter 6 shows them with the device they came from.
#
#   OUT=/some/folder bash scripts/gpu_bench.sh        # from the repository root, on a machine with CUDA
#
# Needs only torch (and torchvision for the side-by-side check); cspnet_lab is used from this checkout.
# GPU_BENCH_DRY_RUN=1 runs the same steps on the CPU with tiny sizes (the tests do this).
set -euo pipefail
OUT="${OUT:?set OUT to the folder for the result files}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
if [ "${GPU_BENCH_DRY_RUN:-0}" = 1 ]; then
  SMALL=(--device cpu --batch-sizes 2 --input-sizes 32 --repeats 2 --warmup 0 --min-run-time 0.01)
  BF16=()
else
  SMALL=()
  BF16=(--bf16)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv" || true
fi
"$PY" -m cspnet_lab bench --preset gpu "${SMALL[@]}" --out "$OUT/bench_gpu_fp32.json"
"$PY" -m cspnet_lab bench --preset gpu --modes train --batch-sizes 128 "${BF16[@]}" --channels-last "${SMALL[@]}" \
  --out "$OUT/bench_gpu_bf16_channels_last.json"
if [ "${GPU_BENCH_DRY_RUN:-0}" != 1 ] && "$PY" -c "import torchvision" 2>/dev/null; then
  "$PY" benchmarks/vs_torchvision.py --device cuda --batch 64 --size 224 --out "$OUT/vs_torchvision_gpu.json"
fi
ls -la "$OUT"
