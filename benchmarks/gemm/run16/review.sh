# Session 13 review: tests/gpu/test_gemm_gpu.py after its helpers were folded (_tensors, run_case via _outputs).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  echo "# python3 -m pytest -q tests/gpu/test_gemm_gpu.py"
  timeout 280 python3 -m pytest -q tests/gpu/test_gemm_gpu.py 2>&1 | grep -v -i warn | tail -4; } > $OUT/review-tests.txt
cat $OUT/review-tests.txt
