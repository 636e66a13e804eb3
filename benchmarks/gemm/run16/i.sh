# Run 16i: the fixed-point split-K completion: its GPU tests and the split-K / PDL-chain / workspace tests first.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  timeout 200 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "split or workspace or repeated or outliers or concurrent or large_shapes_gemv or pdl_chain" 2>&1 | grep -v -i warn | tail -15; } > $OUT/i-tests.txt
cat $OUT/i-tests.txt
