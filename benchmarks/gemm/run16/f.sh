# Run 16f: block reduction through 8 slices (red8), alone and with rest_first (16e), against the shipped kernel.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
P=benchmarks/gemm/probe11.py
python3 $P whatif --kind skinny --m 16 --shapes 8192x8192,4096x4096,28672x8192 --rounds 7 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}' --patches red8,rest_first --all 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/f-w16.json 2>/dev/null
python3 $P whatif --kind skinny --m 16 --shapes 8192x28672 --rounds 5 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0}' --patches red8,rest_first --all 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/f-w8.json 2>/dev/null
