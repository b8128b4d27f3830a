#!/usr/bin/env bash
# Every GPU measurement of docs/benchmarks.md and docs/parity.md in one run, for a lent GPU machine:
#
#   here:    bash scripts/gpu_wheels.sh
#   device:  run(command="bash scripts/gpu_checks.sh", carry=[".whl"], timeout_s=560)
#
# Writes at most 8 files into $OUT (the device tool's limit): gpu.txt, and per step its log and, where
# there is one, its JSON report. Each step has its own time limit so one slow step cannot eat the others'.
# Set GPU_CHECKS_STEPS to a comma list (bench_env,bench_train,parity,determinism) to run only some. The
# limits add up to 540 s, inside one device call (run's timeout_s <= 600).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-outputs/gpu_checks}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
STEPS="${GPU_CHECKS_STEPS:-bench_env,bench_train,parity,determinism}"

{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  lscpu 2>/dev/null | grep -E '^(Model name|CPU\(s\))' || true
  "$PY" -c "import jax, jaxlib; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, jax.devices())"
} > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

step() {  # step NAME LIMIT_S COMMAND...: run it, log to $OUT/NAME.txt, print its tail
  local name=$1 limit=$2
  shift 2
  case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  echo "$name: rc=$rc wall=$((SECONDS - t0))s" | tee -a "$OUT/$name.txt"
  tail -n 30 "$OUT/$name.txt"
}

# Quickest and headline figures first; the determinism cost is the longest step (a second call can run it
# alone with GPU_CHECKS_STEPS=determinism if the first call's limit cut it).
# 1. Env steps/s at scale (target >= 1e9 on the GPU).
step bench_env 60 "$PY" -m tradelab_jax.cli bench env --envs 1024,8192,65536,262144 --numpy-steps 5000
# 2. PPO training steps/s over a 16-point packed sweep of 4096 envs each (target >= 2e7).
step bench_train 90 "$PY" -m tradelab_jax.cli bench train --skip-sb3 --no-cartpole --points 16 --envs 4096
# 3. GPU vs CPU (deterministic GPU settings): features, fixed-action replays, a short PPO run.
step parity 150 "$PY" -m tradelab_jax.cli parity --backends cpu,gpu --no-x64 --out "$WORK/parity"
cp "$WORK/parity/parity_report.json" "$OUT/parity_report.json" 2>/dev/null
# 4. What the deterministic settings cost on the GPU, and whether repeats are bit-identical without them.
step determinism 240 "$PY" -m tradelab_jax.cli parity --measure-determinism-cost --out "$WORK/determinism"
cp "$WORK/determinism/parity_report.json" "$OUT/determinism_report.json" 2>/dev/null
rm -rf "$WORK"
