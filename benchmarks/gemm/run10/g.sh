# Run 10g: FAST split prefetch (weights two units ahead, pf=2) at M=16 and M=1; skinny GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
date -u
python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "skinny_configs or large_shapes or layout_group" 2>&1 | tail -2
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 50 --extra '[{"wc":1,"nt":2,"pf":2,"chk":0,"sm_mult":2},{"wc":1,"nt":2,"pf":2,"chk":0,"splits":1},{"wc":1,"nt":2,"pf":2,"chk":0,"splits":2}]' 2>&1 | grep -v Warn | tee $OUT/m16.txt
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"method":"skinny","wc":1,"nt":1,"pf":2,"chk":0},{"method":"skinny","wc":1,"nt":1,"pf":2,"chk":0,"sm_mult":2},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":0}]' 2>&1 | grep -v Warn | tee $OUT/m1.txt
