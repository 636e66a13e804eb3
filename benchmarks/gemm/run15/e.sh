# Run 15e: how much post-wait work two co-resident PDL launches hide (probe15e.py), one device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 500 python3 benchmarks/gemm/probe15e.py 2>&1 | grep -v -i warn | tee $OUT/e-overlap-depth.txt | tail -24
date -u
