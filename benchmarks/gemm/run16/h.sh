# Run 16h: the GEMV's split-K tail as one 64-bit fixed-point atomic per output (probe16c.py).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD:$PWD/benchmarks/gemm PYTHONUNBUFFERED=1 || exit
python3 benchmarks/gemm/probe16c.py 2>&1 | grep -v -i warn
