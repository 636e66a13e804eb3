# Run 12c: chk=2 (per-chunk zero/scale, running sums in shared memory) at M = 16 against the shipped choice,
# then its GPU tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 200 python3 benchmarks/gemm/probe12.py cfgs --kind skinny --m 16 --shapes 4096x4096,8192x8192,28672x8192 --reps 50 --rounds 4 --cfgs '[{"wc":1,"nt":2,"pf":2,"chk":0,"warps":16},{"wc":1,"nt":2,"pf":0,"chk":1,"warps":16},{"wc":1,"nt":2,"pf":0,"chk":2,"warps":16},{"wc":1,"nt":2,"pf":1,"chk":2,"warps":16},{"wc":1,"nt":2,"pf":2,"chk":2,"warps":16},{"wc":1,"nt":2,"pf":1,"chk":2},{"wc":1,"nt":2,"pf":2,"chk":2}]' 2>&1 | tee $OUT/c-skinny-chk2.txt
timeout 200 python3 -m pytest -q tests/gpu/test_gemm_gpu.py -k "skinny_configs and config1" 2>&1 | tail -4 | tee $OUT/c-tests.txt
