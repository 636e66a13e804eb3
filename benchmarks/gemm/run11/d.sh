# Run 11d: 16-warp skinny blocks (a 64-column tile fills an SM without a K split across blocks): GPU tests,
# M = 16 / M = 1 with 8 and 16 warps, and the 8-warp kernel before/after the change (same call).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 230 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "16_warps or skinny_configs or layout_group or large_shapes or repeated" 2>&1 | grep -v -i warn | tail -3 | tee $OUT/d-tests.txt
X16='[{"wc":1,"nt":2,"pf":1,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":0,"chk":1,"warps":16},{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16,"sm_mult":2},{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16,"splits":1}]'
timeout 150 python3 benchmarks/gemm/compare_chk.py --m 16 --reps 30 --extra "$X16" 2>&1 | grep -v -i warn | tee $OUT/d-m16.txt
X1='[{"wc":2,"nt":1,"pf":1,"chk":0,"warps":16},{"wc":1,"nt":1,"pf":2,"chk":0,"warps":16},{"wc":2,"nt":1,"pf":0,"chk":1,"warps":16}]'
timeout 120 python3 benchmarks/gemm/compare_chk.py --m 1 --reps 30 --extra "$X1" 2>&1 | grep -v -i warn | tee $OUT/d-m1.txt
timeout 120 python3 benchmarks/gemm/probe11.py ab --file w4a16_gemm.cu --old benchmarks/gemm/run11/old_w4a16_gemm.cu --kind skinny --m 16 --rounds 3 --reps 30 --shapes 4096x4096,8192x8192,28672x8192 --cfgs '[{"wc":1,"nt":2,"pf":1,"chk":0},{"wc":1,"nt":2,"pf":2,"chk":0}]' 2>&1 | grep -v -i warn | tee $OUT/d-ab-m16.txt
