# Run 11f: narrow GEMV blocks (32/64 columns, 16 warps, no K split across blocks at N = 4096-8192): GPU tests,
# M = 1 timings of wide and narrow configurations on all four shapes (twice, interleaved by the rounds of
# probe10's list order), and what is left at M = 16 with 16-warp skinny blocks.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 200 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "gemv or outliers or repeated" 2>&1 | grep -v -i warn | tail -3 | tee $OUT/f-tests.txt
C='[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":1,"cw":8},{"vw":2,"fl":8,"pf":0,"cw":8},{"vw":2,"fl":8,"pf":1,"cw":4},{"vw":1,"fl":8,"pf":1,"cw":4},{"vw":2,"fl":8,"pf":0,"waves":1},{"vw":2,"fl":8,"pf":1,"cw":8},{"vw":2,"fl":8,"pf":1,"cw":4},{"vw":2,"fl":8,"pf":1,"waves":1}]'
timeout 150 python3 benchmarks/gemm/probe10.py gemv --m 1 --reps 40 --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs "$C" 2>&1 | grep -v -i warn | tee $OUT/f-gemv-m1.txt
timeout 100 python3 benchmarks/gemm/probe11.py whatif --m 16 --rounds 3 --reps 30 --shapes 8192x8192 --cfg '{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16}' --patches x_fixed,w_fixed,half_units 2>&1 | grep -v -i warn | tee $OUT/f-whatif-m16w16.txt
