# Run 11e: what is left at M = 16 with 16-warp blocks and at M = 1 in the GEMV (split-K round trip, slope over
# work), and whether cuBLAS fp16 at M = 4096 depends on the weight values.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 100 python3 benchmarks/gemm/probe11.py whatif --m 16 --rounds 3 --reps 30 --shapes 8192x8192 --cfg '{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16}' --patches x_fixed,w_fixed,half_units 2>&1 | grep -v -i warn | tee $OUT/e-whatif-m16w16.txt
timeout 100 python3 benchmarks/gemm/probe11.py whatif --kind gemv --m 1 --rounds 3 --reps 30 --shapes 4096x4096,8192x8192 --cfg '{"vw":2,"fl":8,"pf":1,"waves":1}' --patches no_splitk,half_rows 2>&1 | grep -v -i warn | tee $OUT/e-whatif-gemv.txt
timeout 200 python3 benchmarks/gemm/probe11.py wdata --rounds 4 --reps 20 --shapes 4096x4096,8192x8192,8192x28672 2>&1 | grep -v -i warn | tee $OUT/e-wdata.txt
