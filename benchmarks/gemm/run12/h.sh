# Run 12h: CPU vs GPU time per call on the large-M path (is it launch-bound?).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 120 python3 benchmarks/gemm/run12/h_cpu.py 2>&1 | grep -v -i warn | tee $OUT/h-cpu.txt
