# Run 16 final (session 13): every GPU test (-> benchmarks/gemm/gpu-tests.txt), then the full benchmark
# (-> RESULTS.md / results.json) on the same source, one device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# GPU test run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), CuPy $(python3 -c 'import cupy; print(cupy.__version__)')"
  echo "# python3 -m pytest -v tests/gpu"
  timeout 330 python3 -m pytest -v tests/gpu 2>&1 | grep -v -i "warn" ; } > $OUT/gpu-tests.txt
tail -2 $OUT/gpu-tests.txt; grep -E "FAIL|Error" $OUT/gpu-tests.txt | head
date -u
timeout 250 python3 benchmarks/gemm/run_gemm_bench.py --out-dir $OUT 2>&1 | grep -v -i warn > $OUT/bench.log; tail -14 $OUT/bench.log
date -u
