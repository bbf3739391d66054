#!/usr/bin/env bash
# Issue 8's tiny VAE on a lent GPU: continue the shipped VAE for T_TRAIN seconds in two ways side by side, then
# score the start and both results on the same held-out videos and return the two exports:
#   decoder   the decoder alone (train_encoder=false): every latent, so the trained teacher and student, unchanged
#   full      encoder and decoder (the latents move: the teacher and student would have to be retrained on them)
# Training worlds are rendered on the device's CPU cores (seeds far from the held-out ones); the rate is what
# decides the next step toward 28 dB (PSNR rose about 1 dB per doubling of steps at batch 32 from scratch).
#     bash benchmarks/gpu_vae.sh        # carry [".whl"]: its wheels, vae_tiny_export/ (START), vae_heldout_8.npy
#     SMOKE=1 bash benchmarks/gpu_vae.sh  # tiny sizes and 2 steps on any backend (the CPU: ~10 min)
# Knobs (environment): T_TRAIN seconds per run (both at once; 300), BATCH (64), LR (3e-4), CROP (64), FRAMES (9),
# CLIP_FRAMES (frames rendered per world, 9; 45 with FRAMES=45 trains long streams), WORLDS (384),
# START (an exported VAE folder), HELDOUT (a .npy of (N, 9, 96, 160, 3) uint8 videos).
# In $OUT: train_*.log, quality_{start,decoder,full}.md, vae_{decoder,full}/ (exports, vae.json inside).
set -u
source "$(dirname "$0")/gpu_env.sh" /tmp/gpu_vae
START=${START:-.whl/vae_tiny_export}
HELDOUT=${HELDOUT:-.whl/vae_heldout_8.npy}
[ -f "$START/vae.json" ] || { echo "no exported VAE at START=$START"; exit 4; }
STEPS=200000  # far beyond T_TRAIN: each run stops on SIGTERM, which saves its last step
if [ "${SMOKE:-0}" = 1 ]; then
  T_TRAIN=${T_TRAIN:-900} BATCH=2 CROP=32 FRAMES=5 CLIP_FRAMES=9 WORLDS=2 STEPS=2 NUM=2
else
  T_TRAIN=${T_TRAIN:-300} BATCH=${BATCH:-64} CROP=${CROP:-64} FRAMES=${FRAMES:-9} CLIP_FRAMES=${CLIP_FRAMES:-9}
  WORLDS=${WORLDS:-384} NUM=16
fi
LR=${LR:-3e-4}
CLIPS=/tmp/gpu_vae_clips.npy
part clips 240 env JAX_PLATFORMS=cpu python3 experiments/train_vae.py make_clips $CLIPS --worlds $WORLDS \
  --workers "$(nproc)" --frames "$CLIP_FRAMES" || exit 5
[ "${SMOKE:-0}" = 1 ] && HELDOUT=$CLIPS
args="data=$CLIPS,clip_frames=$CLIP_FRAMES,batch=$BATCH,steps=$STEPS,lr=$LR,decay=constant,crop=$CROP,frames=$FRAMES"
t0=$SECONDS
for mode in decoder full; do
  enc=$([ $mode = decoder ] && echo false || echo true)
  rm -rf /tmp/gpu_vae_$mode
  XLA_PYTHON_CLIENT_MEM_FRACTION=0.45 timeout -s TERM "$T_TRAIN" python3 -m star_jax.train --noprogress \
    --config "experiments/train_vae.py:$args,init=$START,train_encoder=$enc" \
    --workdir /tmp/gpu_vae_$mode > "$OUT/train_$mode.log" 2>&1 &
done
wait
echo "== train (both runs): $((SECONDS - t0)) s"
for mode in decoder full; do
  tail -n 2 "$OUT/train_$mode.log"
  tail -n 1 /tmp/gpu_vae_$mode/metrics.jsonl
  python3 -m star_jax.checkpoint.export vae --workdir /tmp/gpu_vae_$mode --out "$OUT/vae_$mode" --stats_videos 128
done
for name in start decoder full; do
  vae=$([ $name = start ] && echo "$START" || echo "$OUT/vae_$name")
  part quality_$name 180 python3 -m benchmarks.vae_quality --vae "$vae" --data "$HELDOUT" --num $NUM \
    --out "$OUT/quality_$name.md"
done
for f in "$OUT"/quality_*.md; do echo "$(basename "$f"): $(grep "PSNR (dB)" "$f")"; done
ls -la "$OUT"
