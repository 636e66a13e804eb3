# Run 15c: l2pf (block slice into L2 before the PDL wait) (probe15b.py), one device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 500 python3 benchmarks/gemm/probe15b.py c 2>&1 | grep -v -i warn | tee $OUT/c-l2pf.txt | tail -45
date -u
