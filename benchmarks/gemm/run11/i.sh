# Run 11i: the CHK=0 one-unit-chunk specialization moved to the top of the kernel (before the 16-warp halves):
# 16-warp GPU tests and an old/new A/B of the two 16-warp M=16 configurations (8-warp SASS is identical).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 90 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "16_warps" 2>&1 | grep -v -i warn | tail -2 | tee $OUT/i-tests.txt
timeout 90 python3 benchmarks/gemm/probe11.py ab --file w4a16_gemm.cu --old benchmarks/gemm/run11/old_w4a16_gemm.cu --kind skinny --m 16 --rounds 3 --reps 30 --shapes 4096x4096,8192x8192,28672x8192 --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":1,"chk":0,"warps":16}]' 2>&1 | grep -v -i warn | tee $OUT/i-ab-m16.txt
