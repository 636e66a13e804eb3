# Run 10h: column warps (cw: 8 warps x own 64-col tiles over the same units) at M=16 / M=1; tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
date -u
python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "skinny_configs or column_warps" 2>&1 | tail -3
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 50 --extra '[{"wc":1,"nt":2,"pf":2,"chk":0,"cw":1,"sm_mult":3},{"wc":1,"nt":2,"pf":2,"chk":0,"cw":1,"sm_mult":1},{"wc":2,"nt":2,"pf":1,"chk":0,"cw":1}]' 2>&1 | grep -v Warn | tee $OUT/m16.txt
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"method":"skinny","wc":1,"nt":1,"pf":2,"chk":0,"cw":1},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":0,"cw":1},{"method":"skinny","wc":2,"nt":1,"pf":0,"chk":1,"cw":1}]' 2>&1 | grep -v Warn | tee $OUT/m1.txt
