# Run 10d: GPU tests incl. the new shared-memory kernel (w4a16_ldsm.cu), then M=16 / M=1 sweeps with it.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
date -u
python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k ldsm 2>&1 | tee $OUT/gpu-tests-ldsm.txt | tail -15
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 50 --extra '[{"ldsm":5,"nt":2},{"ldsm":4,"nt":2,"sm_mult":1},{"ldsm":4,"nt":2,"sm_mult":3},{"ldsm":6,"nt":2,"sm_mult":1}]' 2>&1 | grep -v Warn | tee $OUT/m16.txt
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"method":"skinny","ldsm":4,"nt":1},{"method":"skinny","ldsm":6,"nt":1},{"method":"skinny","ldsm":3,"nt":1},{"method":"skinny","ldsm":4,"nt":1,"sm_mult":1},{"method":"skinny","ldsm":6,"nt":1,"sm_mult":3}]' 2>&1 | grep -v Warn | tee $OUT/m1.txt
python3 -m pytest -q tests/gpu 2>&1 | tee $OUT/gpu-tests.txt | tail -3
