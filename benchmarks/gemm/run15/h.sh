# Run 15h: the GEMV l2pf GPU tests after their K % 8 != 0 cases were added (session 12 review).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name --format=csv,noheader)"
  timeout 200 python3 -m pytest -v tests/gpu/test_gemm_gpu.py -k "l2_prefetch or pdl_chain" 2>&1 | grep -v -i warn; } > $OUT/h-tests.txt
tail -3 $OUT/h-tests.txt; grep -E "FAIL|Error" $OUT/h-tests.txt | head
