# Run 11c: the skinny kernel's K splits summed inside a thread-block cluster (distributed shared memory)
# instead of the fp32 workspace: GPU tests, then M = 16 and M = 1 with and without clusters, same call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 200 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "split_reduction or skinny_configs or large_shapes or layout_group or outliers or repeated" 2>&1 | grep -v -i warn | tail -4 | tee $OUT/c-tests.txt
X16='[{"wc":1,"nt":2,"pf":1,"chk":0,"cluster":0},{"wc":1,"nt":2,"pf":2,"chk":0,"cluster":0},{"wc":1,"nt":2,"pf":2,"chk":0,"sm_mult":3},{"wc":1,"nt":2,"pf":1,"chk":0,"sm_mult":3},{"wc":1,"nt":2,"pf":2,"chk":0,"sm_mult":4},{"wc":1,"nt":2,"pf":1,"chk":0,"sm_mult":4},{"wc":1,"nt":2,"pf":2,"chk":0,"splits":2},{"wc":1,"nt":2,"pf":2,"chk":0,"splits":4}]'
timeout 200 python3 benchmarks/gemm/compare_chk.py --m 16 --reps 30 --extra "$X16" 2>&1 | grep -v -i warn | tee $OUT/c-m16.txt
X1='[{"wc":2,"nt":1,"pf":1,"chk":0,"cluster":0},{"wc":1,"nt":1,"pf":2,"chk":0,"cluster":0},{"wc":1,"nt":1,"pf":2,"chk":0,"sm_mult":3},{"wc":2,"nt":1,"pf":1,"chk":0,"sm_mult":3},{"wc":2,"nt":1,"pf":1,"chk":0}]'
timeout 150 python3 benchmarks/gemm/compare_chk.py --m 1 --reps 30 --extra "$X1" 2>&1 | grep -v -i warn | tee $OUT/c-m1.txt
