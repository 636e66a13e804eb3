# Run 15a: floors of the missed cells under the benchmark's method (probe15.py), one device call.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u; nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv
timeout 500 python3 benchmarks/gemm/probe15.py 2>&1 | grep -v -i warn | tee $OUT/a-floors.txt | tail -12
date -u
