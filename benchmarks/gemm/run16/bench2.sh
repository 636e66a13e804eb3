# Run 16, second benchmark of the same source (the first: final1/, 22:29 UTC). Decided before it ran: this later
# run becomes RESULTS.md / results.json, the first stays in run16/final1 and both are listed in NOTES.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 250 python3 benchmarks/gemm/run_gemm_bench.py --out-dir $OUT 2>&1 | grep -v -i warn > $OUT/bench.log; tail -12 $OUT/bench.log
date -u
