# Run 16a (session 13): what-if bounds under PDL for the three missed cells: the shipped kernels with parts of
# their work patched out (outputs wrong on purpose), to see whether any fix of that part could reach the target.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
P=benchmarks/gemm/probe11.py
python3 $P whatif --kind gemv --m 1 --shapes 4096x4096 --rounds 5 --cfg '{"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1}' --patches no_splitk,no_last,store_not_atomic,half_rows 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/a-gemv.json 2>/dev/null
python3 $P whatif --kind skinny --m 16 --shapes 4096x4096,8192x8192 --rounds 5 --cfg '{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16}' --patches no_splitk,x_fixed,w_fixed,zs_fixed,half_units --all 2>&1 | grep -v -i warn
cp $OUT/probe11-whatif.json $OUT/a-skinny.json 2>/dev/null
