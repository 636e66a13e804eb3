# Run 16g: cuBLAS fp16 at M = 1 and 16 with W stored [K, N] (the benchmark) and [N, K] (nn.Linear), probe16b.py.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
python3 benchmarks/gemm/probe16b.py 2>&1 | grep -v -i warn
