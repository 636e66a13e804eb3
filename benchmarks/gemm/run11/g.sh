# Run 11g: CHK = 0 kernels know their chunk is one unit (unit_of without runtime shifts): skinny GPU tests,
# old/new skinny A/B at M = 16 (the tuned 8- and 16-warp configurations), then the full benchmark.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 170 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "skinny or layout_group or large_shapes or outliers or lop3 or agree" 2>&1 | grep -v -i warn | tail -3 | tee $OUT/g-tests.txt
timeout 100 python3 benchmarks/gemm/probe11.py ab --file w4a16_gemm.cu --old benchmarks/gemm/run11/old_w4a16_gemm.cu --kind skinny --m 16 --rounds 3 --reps 30 --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":1,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":2,"chk":0},{"wc":1,"nt":2,"pf":1,"chk":0}]' 2>&1 | grep -v -i warn | tee $OUT/g-ab-m16.txt
grep -q "passed" $OUT/g-tests.txt && ! grep -q "failed" $OUT/g-tests.txt || exit 1
mkdir -p $OUT/bench && timeout 200 python3 benchmarks/gemm/run_gemm_bench.py --out-dir $OUT/bench 2>&1 | grep -v -i warn > $OUT/bench/bench.log; tail -12 $OUT/bench/bench.log
