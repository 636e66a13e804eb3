# Run 11h: does the outlier test's input break the GEMV without the fp32 fallback? (the test must be able to fail)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 120 python3 benchmarks/gemm/run11/h_outlier_old.py 2>&1 | grep -v -i warn | tee $OUT/h-outlier-old.txt
