# Run 11b: the GEMV's fp32 fallback for overflowing fp16 partial sums (activation outliers): kernel GPU tests,
# old vs new GEMV speed at M = 1; and where the M = 16 time goes (split-K epilogue, slope over units).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 240 python3 -m pytest -q tests/gpu/test_gemm_gpu.py 2>&1 | grep -v -i warn | tail -5 | tee $OUT/b-gemm-tests.txt
timeout 150 python3 benchmarks/gemm/probe11.py ab --old benchmarks/gemm/run11/old_w4a16_gemv.cu --m 1 --rounds 3 --reps 30 --shapes 4096x4096,8192x8192,8192x28672,28672x8192 2>&1 | grep -v -i warn | tee $OUT/b-gemv-ab.txt
timeout 150 python3 benchmarks/gemm/probe11.py whatif --m 16 --rounds 3 --reps 30 --patches no_splitk,half_units --shapes 4096x4096,8192x8192,8192x28672 2>&1 | grep -v -i warn | tee $OUT/b-whatif-m16.txt
