#!/usr/bin/env bash
# The GPU checks of issues 8, 11 and 12 in one time-boxed run on a lent device (one GPU):
#   dit       the 1.3B STAR block at 480x832 per attention implementation (MFU)
#   rollout   the navigation session at 480x832: stage shares and frames/s (Wan vs TAEHV decoder, staged vs one
#             compiled program per block)
#   train     the 1.3B teacher train step (step time, MFU, peak memory)
#   geometry  the Depth-Anything-3 base encoder on a 16-view window (frames/s)
# Each part has its own time limit (seconds, below) so that a slow one cannot take the others' time;
# logs go to $OUT (default /tmp/gpu_suite). Wheels for packages the device image lacks (grain,
# ml_collections, ...) are installed from .whl/ when they are missing.
#     bash benchmarks/gpu_suite.sh                  # on the GPU
#     SMOKE=1 bash benchmarks/gpu_suite.sh          # the same parts at tiny sizes on any backend
set -u
source "$(dirname "$0")/gpu_env.sh" /tmp/gpu_suite

if [ "${SMOKE:-0}" = 1 ]; then
  part dit 300 python3 -m benchmarks.dit_bench --smoke --repeats 2 --attention xla,dot_product
  part rollout 300 python3 -m benchmarks.rollout_bench --attention dot_product --sessions once,tiny,fused_tiny --no_scan \
    --blocks 3
  part train 300 python3 -m benchmarks.train_bench --gpu --variant tiny --batch 2 --steps 2 --attention dot_product
  part geometry 300 python3 -m benchmarks.geometry_bench --views 4 --hw 98x168 --attention dot_product,blockwise --repeats 1
else
  part rollout ${T_ROLLOUT:-220} python3 -m benchmarks.rollout_bench --gpu --attention dot_product \
    --sessions tiny,fused_tiny --no_scan --blocks 5
  part dit ${T_DIT:-110} python3 -m benchmarks.dit_bench --gpu --repeats 5 --attention xla,dot_product
  part train ${T_TRAIN:-170} env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95 python3 -m benchmarks.train_bench --gpu --batch 2 \
    --steps 3 --attention dot_product,blockwise
  part geometry ${T_GEOMETRY:-70} python3 -m benchmarks.geometry_bench --variant base --dtype bfloat16 \
    --attention dot_product,blockwise
fi
cp benchmarks/results/train_bench_*.md "$OUT/" 2>/dev/null
[ "${SMOKE:-0}" = 1 ] && rm -f benchmarks/results/train_bench_*_tiny.md  # a smoke run leaves no result file
ls -la "$OUT"
