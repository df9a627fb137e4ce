#!/usr/bin/env bash
# The GPU check, prepared to run in one go on a machine with an NVIDIA GPU (under 8 minutes):
#   1. CuPy: used if importable (the lab's H200 image ships cupy-cuda13x), else
#      `pip install cupy-cuda12x`, else (offline) from the wheels in $CUPY_WHEELS;
#   2. `pytest -m gpu tests/test_cupy.py`: CuPy's masks and ε traces equal NumPy's on every
#      golden fixture, prune_linear for every method, and a whole prune + perplexity;
#   3. benchmarks/backends.py with a small budget: NumPy vs CuPy times and their agreement, on
#      the demo model when its converted copy is in the cache, else on the tiny fixture model
#      (override with DSNOT_CHECK_MODEL=DIR). The tiny model only shows that both run and
#      agree: it is far too small for the GPU to be faster.
# dsnot_ref is imported from this checkout (PYTHONPATH) when it is not installed, so nothing
# has to be fetched. Output also goes to $OUT/gpu_check.log when $OUT is set.
# Exit status: pytest's.
#
#   bash tools/gpu_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
fi
say() { printf '\n== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not available"
PY=${PYTHON:-python3}
"$PY" --version
export PYTHONUNBUFFERED=1
"$PY" -c "import dsnot_ref" 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say "CuPy"
if ! "$PY" -c "import cupy" 2>/dev/null; then
    timeout 150 "$PY" -m pip install -q "cupy-cuda12x>=13" \
        || timeout 60 "$PY" -m pip install -q --no-index --find-links "${CUPY_WHEELS:-shared/wheels}" cupy-cuda12x \
        || echo "CuPy could not be installed: the gpu tests will be skipped"
fi
"$PY" - <<'EOF'
try:
    import cupy
    print("cupy", cupy.__version__, "| GPUs visible:", cupy.cuda.runtime.getDeviceCount())
except Exception as exc:  # report, do not stop: pytest will skip
    print("cupy unavailable:", exc)
EOF

say "pytest -m gpu tests/test_cupy.py"
timeout 240 "$PY" -m pytest -q -m gpu tests/test_cupy.py -rs -p no:cacheprovider
status=$?

say "benchmarks/backends.py"
model="${DSNOT_CHECK_MODEL:-}"
if [ -z "$model" ]; then
    model=$("$PY" - <<'EOF'
from dsnot_ref.demo_model import demo_model_dir, is_complete
d = demo_model_dir("smollm2-135m")
print(d if is_complete(d) else "data/fixtures/tiny-llama")
EOF
)
fi
timeout 120 "$PY" benchmarks/backends.py --model "$model" --nsamples 8 --seqlen 128 --eval-windows 4 \
    || echo "backends benchmark did not finish (status $?)"

say "done: pytest status $status"
exit "$status"
