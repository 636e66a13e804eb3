# Run 15f: the sg=1 skinny kernel (weights staged in shared memory before the PDL wait): its GPU tests, then
# probe15b.py f (4096x4096, M = 1, 8, 16 against the shipped configurations), one device call. Ran on commit
# 1a347b4; sg=1 was reverted after it.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
date -u
timeout 200 python3 -m pytest -q -x tests/gpu/test_gemm_gpu.py -k "staged or pdl_chain" 2>&1 | grep -v -i warn | tee $OUT/f-tests.txt | tail -8
timeout 300 python3 benchmarks/gemm/probe15b.py f 2>&1 | grep -v -i warn | tee $OUT/f-sg.txt | tail -60
date -u
