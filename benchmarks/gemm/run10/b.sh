# Run 10b: GPU tests of the FAST-load kernels, floors, then M=16 / M=1 sweeps (one device call).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
date -u; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -m pytest -q -x tests/gpu 2>&1 | tee $OUT/gpu-tests.txt | tail -3
P=benchmarks/gemm/probe10.py
python3 $P floor 2>&1 | tee $OUT/floor.txt
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 50 --extra '[{"wc":2,"nt":2,"pf":0,"chk":0,"sm_mult":1},{"wc":1,"nt":2,"pf":1,"chk":1},{"wc":2,"nt":2,"pf":1,"chk":0,"sm_mult":2}]' 2>&1 | tee $OUT/m16.txt
python3 $P gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"vw":2,"fl":8,"pf":1,"waves":2},{"vw":1,"fl":8,"pf":1,"waves":1},{"vw":1,"fl":8,"pf":0,"waves":1},{"vw":4,"fl":8,"pf":0,"waves":1},{"vw":4,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":4,"pf":1,"waves":1},{"method":"skinny","wc":2,"nt":1,"pf":0,"chk":1},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":1},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":0}]' 2>&1 | grep -v Warn | tee $OUT/gemv.txt
grep -h "x[0-9]" $OUT/m16.txt | head -0
