# Run 12e: split-K completion with one fencing thread (split_arrive) vs the all-thread fences (old copies of the
# kernel files in run12/old_*.cu, not committed: git show 2b1c967:kernels/...), then the split-K GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 200 python3 benchmarks/gemm/probe11.py ab --kind gemv --m 1 --rounds 6 --reps 50 --shapes 4096x4096,8192x8192,28672x8192 --file w4a16_gemv.cu --old benchmarks/gemm/run12/old_gemv.cu --cfgs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":4,"pf":1,"waves":1}]' 2>&1 | grep -v -i warn | tee $OUT/e-ab-gemv.txt
timeout 150 python3 benchmarks/gemm/probe11.py ab --kind skinny --m 16 --rounds 6 --reps 50 --shapes 4096x4096 --file w4a16_gemm.cu --old benchmarks/gemm/run12/old_gemm.cu --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":1,"chk":0}]' 2>&1 | grep -v -i warn | tee $OUT/e-ab-skinny.txt
timeout 200 python3 -m pytest -q tests/gpu/test_gemm_gpu.py -k "gemv_configs or skinny_configs or 16_warps or repeated or large_shapes" 2>&1 | tail -3 | tee $OUT/e-tests.txt
