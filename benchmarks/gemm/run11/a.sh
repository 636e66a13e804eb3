# Run 11a: every GPU test (first run after session 7's post-benchmark commits), then the M=16 what-if probe
# (which load kind costs the time) and the M=4096 in-sequence / ABBA probe.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# GPU test run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), CuPy $(python3 -c 'import cupy; print(cupy.__version__)')"
  echo "# python3 -m pytest -v tests/gpu"
  timeout 300 python3 -m pytest -v tests/gpu 2>&1 | grep -v -i "warn" ; } > $OUT/gpu-tests.txt
tail -2 $OUT/gpu-tests.txt; grep -E "FAIL|Error" $OUT/gpu-tests.txt | head
timeout 120 python3 benchmarks/gemm/probe11.py whatif --m 16 --rounds 3 --reps 30 --all 2>&1 | grep -v -i warn | tee $OUT/a-whatif-m16.txt
timeout 60 python3 benchmarks/gemm/probe11.py whatif --m 1 --rounds 2 --reps 30 --shapes 8192x8192 --cfg '{"wc":2,"nt":1,"pf":1,"chk":0}' 2>&1 | grep -v -i warn | tee $OUT/a-whatif-m1.txt
timeout 120 python3 benchmarks/gemm/probe11.py pair --reps 10 --rounds 2 --shapes 8192x28672,28672x8192,4096x4096 2>&1 | grep -v -i warn | tee $OUT/a-pair.txt
