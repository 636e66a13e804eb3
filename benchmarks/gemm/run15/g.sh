# Run 15g: the L2 prefetch-size hint per missed cell (probe15g.py), one device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 500 python3 benchmarks/gemm/probe15g.py 2>&1 | grep -v -i warn | tee $OUT/g-l2hint.txt | tail -24
date -u
