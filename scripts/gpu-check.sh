#!/usr/bin/env bash
# The checks that need a GPU, run on the lent GPU machine from a checkout:
#   bash scripts/gpu-check.sh
# That machine has CuPy, NumPy, pandas, seaborn, pytest and PyTorch but reaches
# no package registry, so the project runs from the checkout, not installed:
# a temporary folder links kernels/ and suite/ as optbench/kernels and
# optbench/suite, the names an install gives them, and goes on PYTHONPATH.
# Logs go to $OUT when it is set (else results/gpu/last-run/).
# Finishes in about 5-7 minutes on an H100. The optimisers-grid study (the
# GPU target of the populations issue) and the default protocol need mnist1d,
# which that machine cannot generate: copy ~/.cache/optbench to .cache/optbench
# in the checkout and carry it (the device tool's carry: [".cache"]).
set -uo pipefail
cd "$(dirname "$0")/.."
shim=$(mktemp -d)
mkdir -p "$shim/optbench" && ln -s "$PWD/kernels" "$shim/optbench/kernels" && ln -s "$PWD/suite" "$shim/optbench/suite"
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
[ -d .cache/optbench ] && export OPTBENCH_CACHE="${OPTBENCH_CACHE:-$PWD/.cache/optbench}"
out="${OUT:-results/gpu/last-run}"
mkdir -p "$out"
status=()

step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember the verdict
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$out/$name.log"
  status+=("$(printf '%-14s %-5s %4ss  %s' "$name" "$([ $rc = 0 ] && echo ok || echo FAIL)" $((SECONDS - t0)) "$out/$name.log")")
  return 0
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/device.txt" 2>&1
python -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" >>"$out/device.txt" 2>&1
cat "$out/device.txt"

# The gpu-marked tests on the real CuPy (in CI they run on the CuPy stand-in);
# the quick bench runs as its own step below.
step gpu-tests    python -m pytest -q -m gpu -p no:cacheprovider -k "not test_bench_on_cupy_runs" tests
step validate     python -m optbench.suite.cli validate --backend cupy
# The quick throughput benchmark (rules 2^10..2^26, dropout, model-shaped, training; CuPy
# vs PyTorch where it has CUDA): its table, meta.json, report.md and figures go to
# $out/throughput (copy them to results/throughput/<GPU>/). ~1-2 minutes on an H100;
# the timeout keeps the script under 5 minutes (the table is saved after every section).
step bench        timeout 200 python -m optbench.suite.cli bench --backend cupy --quick --out "$out/throughput" \
                    --note "lent GPU machine, scripts/gpu-check.sh (quick run)"

# Low-precision state (issue 23): each rule's step with its state in float32, in bf16 (16 bits
# loaded and stored by the rule's kernel, to nearest and stochastically) and in 8-bit codes
# (rounded after the step), timed side by side; the speed-up against float32 is in its log and
# $out/state/report.md ("State precision").
step state        timeout 120 python -m optbench.suite.cli bench --backend cupy --sizes 2^24,2^26 \
                    --state fp32,bf16,bf16-sr,int8 --only adam,momentum,lion,adagrad --repeats 20 --no-torch \
                    --out "$out/state"

# Populations: per member-step cost against P up to a 10,000-member population
# of the mnist1d MLP (random data of mnist1d's shape: no data set needed).
step population   timeout 150 python -m optbench.suite.cli bench --backend cupy --population --members 1,108,1000,10000 \
                    --repeats 5 --no-torch --out "$out/population"
# The 324-cell optimisers-grid study by populations (target: under 10 s), where
# its data set can be made here (mnist1d's generator, or a cache carried in
# $OPTBENCH_CACHE); the default protocol also needs scikit-learn's digits. It
# runs last: where the call's time limit stops it, every step before it has
# written its log, and a rerun resumes its cells.
if python -c "import mnist1d" 2>/dev/null || ls "${OPTBENCH_CACHE:-$HOME/.cache/optbench}"/mnist1d-*.npz >/dev/null 2>&1; then
  step grid       timeout 150 python -m optbench.suite.cli run optimisers-grid --backend cupy --out "$out/optimisers-grid" --no-report
  # The same study with every step launched from Python (issue 22): the grid's wall time with and
  # without CUDA graphs is the two steps' times in the summary.
  step grid-launched timeout 100 python -m optbench.suite.cli run optimisers-grid --backend cupy --no-graph \
                  --out "$out/optimisers-grid-launched" --no-report
  if python -c "import sklearn" 2>/dev/null; then
    step protocol timeout 200 python -m optbench.suite.cli run default --backend cupy --out "$out/default"
  fi
fi

echo
echo "== summary ($(head -n 2 "$out/device.txt" | tail -n 1))"
printf '%s\n' "${status[@]}"
grep -E '^adam ' "$out/bench.log" || true
sed -n '/^state precision/,$p' "$out/state.log" 2>/dev/null || true
sed -n '/^## Acceptance/,/^## Update/p' "$out/throughput/report.md" 2>/dev/null | grep '^|' || true
