# Session 12 review 2: GPU tests of the launch paths whose vector-width loops lost their (always false) pointer tests.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  timeout 400 python3 -m pytest -q tests/gpu/test_gemm_gpu.py 2>&1 | grep -v -i warn | tail -5; } > $OUT/review2-tests.txt
cat $OUT/review2-tests.txt
