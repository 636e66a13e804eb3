# Run 13 final (PDL, tuned per shape): the full benchmark (RESULTS.md / results.json) in one device call; the GPU tests in the next.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 570 python3 benchmarks/gemm/run_gemm_bench.py --out-dir $OUT 2>&1 | grep -v -i warn > $OUT/bench.log; tail -14 $OUT/bench.log
date -u
