# Run 12i: cached SM count and occupancy; Python cost per call by path (cProfile); the GPU tests of every path.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
timeout 60 python3 benchmarks/gemm/run12/i_prof.py 2>&1 | grep -v -i warn | tee $OUT/i-prof.txt
timeout 150 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "layout_group_method or gemv_configs or skinny_16 or repeated or errors" 2>&1 | tail -3 | tee $OUT/i-tests.txt
