# Run 14 (session 11): every GPU test, output committed as benchmarks/gemm/gpu-tests.txt.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# GPU test run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), CuPy $(python3 -c 'import cupy; print(cupy.__version__)')"
  echo "# python3 -m pytest -v tests/gpu"
  timeout 500 python3 -m pytest -v tests/gpu 2>&1 | grep -v -i "warn" ; } > $OUT/gpu-tests.txt
tail -2 $OUT/gpu-tests.txt; grep -E "FAIL|Error" $OUT/gpu-tests.txt | head
