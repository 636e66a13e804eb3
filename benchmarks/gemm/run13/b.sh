# Run 13b: programmatic dependent launch (PDL) of the GEMV and skinny kernels: the chain tests first, then PDL
# vs plain launches on the same data, then the GPU tests of the launch paths.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 150 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "pdl" 2>&1 | tail -15 | tee $OUT/b-tests-pdl.txt
grep -q "passed" $OUT/b-tests-pdl.txt && ! grep -q "failed" $OUT/b-tests-pdl.txt || exit 1
timeout 240 python3 benchmarks/gemm/probe13.py pdl --rounds 6 --reps 50 --ms 1,16 --shapes 4096x4096,8192x8192,28672x8192 --cfgs '{"1": [{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":4,"pf":1,"waves":1}], "16": [{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":1,"pf":1,"chk":0,"warps":16}]}' 2>&1 | grep -v -i warn | tee $OUT/b-pdl.txt
timeout 170 python3 -m pytest -q tests/gpu/test_gemm_gpu.py -k "gemv_configs or skinny_configs or 16_warps or repeated or large_shapes or errors" 2>&1 | tail -3 | tee $OUT/b-tests.txt
