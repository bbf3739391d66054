# Sourced by the GPU scripts (gpu_suite.sh, gpu_vae.sh) on a lent device: installs the wheels of .whl/
# (grain, ml_collections, ...: the device image's Python 3.12 lacks them) when missing, prints the devices,
# and checks the imports. Sets OUT (default: $1) and PYTHONUNBUFFERED.
export PYTHONUNBUFFERED=1
OUT=${OUT:-$1}
mkdir -p "$OUT"
if ! python3 -c "import grain, ml_collections" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi -L
python3 -c "import jax, flax, optax, grain, ml_collections; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())" || exit 3

part() {  # name, limit in seconds, command...: the command's log in $OUT/name.log, its tail on stdout
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  echo "== $name (limit ${limit}s)"
  timeout -s INT "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $?, $((SECONDS - t0)) s"
  tail -n 25 "$OUT/$name.log"
}
