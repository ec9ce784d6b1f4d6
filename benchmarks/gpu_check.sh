#!/usr/bin/env bash
# The GPU checks of minidl in one command, for a machine with CuPy and a CUDA device:
#   bash benchmarks/gpu_check.sh OUTDIR [MINUTES]
# 1. every GPU test case (pytest -m gpu: the xp fixture's cupy half and the GPU CLI run);
# 2. python -m minidl.bench gpu: conv / BatchNorm / LeakyReLU / a vgg38 --bn --residual step
#    against PyTorch on CUDA, and the training loop's device->host copies per step;
# 3. notebook 06_gpu's code cells, run as one script (no Jupyter needed);
# 4. one Fashion-MNIST epoch of vgg38 --bn --residual with --device gpu (if the data is found).
# Each part writes its log to OUTDIR and the script goes on after a failure; the exit status
# is the number of parts that failed. Runs from a checkout without installing it (PYTHONPATH).
set -u
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
failed=0
part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to OUT/NAME.log
  local name=$1 limit=$2; shift 2
  echo "== $name ($(date -u +%T), limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || failed=$((failed + 1))
}
nvidia-smi -L 2>&1 | head -2
$PY -c "import numpy, cupy; print('numpy', numpy.__version__, 'cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())"
part gpu-tests 150 $PY -m pytest -q -m gpu -n 8 -p no:cacheprovider --ignore=tests/test_notebooks.py tests
part bench-gpu 120 $PY -m minidl.bench gpu --json "$OUT/bench-gpu.json" --markdown "$OUT/bench-gpu.md"
part notebook-06 60 $PY -c "
import json, os
os.environ.setdefault('MINIDL_NOTEBOOK_SIZE', 'student')
cells = json.load(open('notebooks/06_gpu.ipynb'))['cells']
code = '\n\n'.join(''.join(c['source']) for c in cells if c['cell_type'] == 'code')
exec(compile(code, '06_gpu.ipynb', 'exec'), {'__name__': '__main__'})
print('notebook 06: every assert held')"
part epoch-gpu 100 $PY -m minidl.train vgg38 --bn --residual --device gpu --epochs 1 \
  --out /tmp/minidl-epoch-gpu --no-progress --no-plots
cp /tmp/minidl-epoch-gpu/test_summary.json /tmp/minidl-epoch-gpu/metrics.csv "$OUT"/ 2>/dev/null
exit $failed
