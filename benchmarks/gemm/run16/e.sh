# Run 16e: zeros/scales/x of the next unit requested before the weights two units ahead (probe11 rest_first).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
P=benchmarks/gemm/probe11.py
python3 $P whatif --kind skinny --m 16 --shapes 8192x8192,4096x4096,28672x8192 --rounds 7 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}' --patches rest_first 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/e-w16.json 2>/dev/null
python3 $P whatif --kind skinny --m 16 --shapes 8192x28672 --rounds 5 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0}' --patches rest_first 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/e-w8.json 2>/dev/null
