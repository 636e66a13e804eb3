# Run 10f: K splits chosen to fill the last wave (balance / splits) at M=16 and M=1; skinny GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
export PYTHONUNBUFFERED=1
date -u
python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "skinny_configs or large_shapes" 2>&1 | tail -2
S='{"wc":1,"nt":2,"pf":1,"chk":0'
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 50 --extra "[$S,\"splits\":1},$S,\"splits\":2},$S,\"splits\":3},$S,\"splits\":4},$S,\"splits\":5},$S,\"splits\":7},{\"wc\":1,\"nt\":2,\"pf\":0,\"chk\":1,\"balance\":1}]" 2>&1 | grep -v Warn | tee $OUT/m16.txt
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":1,"target_blocks":264},{"vw":2,"fl":8,"pf":1,"target_blocks":240},{"vw":2,"fl":8,"pf":1,"target_blocks":200},{"vw":2,"fl":8,"pf":1,"rpt":32},{"vw":2,"fl":8,"pf":1,"rpt":128},{"vw":2,"fl":8,"pf":0,"waves":1},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":0,"balance":1},{"method":"skinny","wc":2,"nt":1,"pf":1,"chk":0}]' 2>&1 | grep -v Warn | tee $OUT/m1.txt
