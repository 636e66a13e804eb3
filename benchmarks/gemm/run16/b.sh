# Run 16b: the staged GEMV (probe16.py) against the shipped GEMV at 4096x4096, M = 1.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks/gemm PYTHONUNBUFFERED=1 || exit
python3 benchmarks/gemm/probe16.py 2>&1 | grep -v -i warn
