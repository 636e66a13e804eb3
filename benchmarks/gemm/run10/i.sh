# Run 10i: GEMV with the K splits reduced inside a thread-block cluster (cluster 8): tests, then M=1 timings.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "gemv" 2>&1 | tail -3
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1},{"vw":2,"fl":8,"pf":1,"cluster":8},{"vw":2,"fl":8,"pf":0,"cluster":8},{"vw":1,"fl":8,"pf":1,"cluster":8},{"vw":4,"fl":8,"pf":0,"cluster":8}]' 2>&1 | grep -v -i warn
