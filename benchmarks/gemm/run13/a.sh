# Run 13a: acq_rel split-K counter (split_arrive) A/B against the old header (run13/old_common.cuh, not
# committed: git show 88e4991:kernels/w4a16_common.cuh); timers with and without the spin kernel; Python cost
# per call with cached SM count / occupancy; the GPU tests of the split-K and launch paths.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv | tee $OUT/a-gpu.txt
timeout 200 python3 benchmarks/gemm/probe11.py ab --kind gemv --m 1 --rounds 6 --reps 50 --shapes 4096x4096,8192x8192 --file w4a16_common.cuh --old benchmarks/gemm/run13/old_common.cuh --cfgs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":4,"pf":1,"waves":1}]' 2>&1 | grep -v -i warn | tee $OUT/a-ab-gemv.txt
timeout 150 python3 benchmarks/gemm/probe11.py ab --kind skinny --m 16 --rounds 6 --reps 50 --shapes 4096x4096,8192x8192 --file w4a16_common.cuh --old benchmarks/gemm/run13/old_common.cuh --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":1,"pf":1,"chk":0,"warps":16}]' 2>&1 | grep -v -i warn | tee $OUT/a-ab-skinny.txt
[ -f $OUT/probe11-ab.json ] && mv $OUT/probe11-ab.json $OUT/a-probe11-ab-skinny.json
timeout 200 python3 benchmarks/gemm/probe13.py hold --rounds 4 --reps 50 2>&1 | grep -v -i warn | tee $OUT/a-hold.txt
timeout 60 python3 benchmarks/gemm/run12/i_prof.py 2>&1 | grep -v -i warn > $OUT/a-prof.txt; grep "us/call" $OUT/a-prof.txt
timeout 170 python3 -m pytest -q tests/gpu/test_gemm_gpu.py -k "gemv_configs or skinny_configs or 16_warps or repeated or large_shapes or layout_group_method or errors" 2>&1 | tail -3 | tee $OUT/a-tests.txt
