# Run 12g: the odd nibbles' x16 undone once after the unit loop instead of 4 FMUL per unit (offline SASS: 216.8 ->
# 212.8 instructions per unit, M = 16 8192² config); old = git show cc2680b:kernels/w4a16_gemm.cu (not committed). Then every GPU test.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 200 python3 benchmarks/gemm/probe11.py ab --kind skinny --m 16 --rounds 6 --reps 50 --shapes 4096x4096,8192x8192,28672x8192 --file w4a16_gemm.cu --old benchmarks/gemm/run12/old_gemm.cu --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":1,"pf":1,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":2,"chk":0}]' 2>&1 | grep -v -i warn | tee $OUT/g-ab-m16.txt
{ echo "# GPU test run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), CuPy $(python3 -c 'import cupy; print(cupy.__version__)')"
  echo "# python3 -m pytest -v tests/gpu"
  timeout 380 python3 -m pytest -v tests/gpu 2>&1 | grep -v -i "warn" ; } > $OUT/gpu-tests.txt
tail -1 $OUT/gpu-tests.txt; grep -E "FAIL|Error" $OUT/gpu-tests.txt | head
