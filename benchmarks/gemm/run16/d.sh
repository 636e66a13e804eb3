# Run 16d: do the blocks queue on the L2 lines of x? x read from 8 (or 2) copies by block (probe11 x_spread*).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
P=benchmarks/gemm/probe11.py
python3 $P whatif --kind skinny --m 16 --shapes 8192x8192,4096x4096,28672x8192 --rounds 5 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}' --patches x_spread,x_spread2 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/d-w16.json 2>/dev/null
python3 $P whatif --kind skinny --m 16 --shapes 8192x28672 --rounds 3 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0}' --patches x_spread 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/d-w8.json 2>/dev/null
