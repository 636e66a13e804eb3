# Run 10, last call: every GPU test after folding the kernels' vector-load blocks into ldg_words / lds_words
# (SASS of the tuned instantiations unchanged) and moving verify's float64 reference onto the GPU; smoke-runs
# of the two tuning scripts after their baseline helper moved into awqfmt.gpu.bench.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
{ echo "# GPU test run, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader), CuPy $(python3 -c 'import cupy; print(cupy.__version__)')"
  echo "# python3 -m pytest -v tests/gpu"
  python3 -m pytest -v tests/gpu 2>&1 | grep -v -i "warn" ; } > $OUT/gpu-tests.txt
tail -2 $OUT/gpu-tests.txt; grep -E "FAIL|Error" $OUT/gpu-tests.txt | head
python3 benchmarks/gemm/compare_chk.py --m 16 --reps 20 --shapes 4096x4096 2>&1 | grep -v -i warn | tail -4
python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1}]' 2>&1 | grep -v -i warn | tail -2
PYTHONPATH=/tmp/site:$PWD /usr/bin/env python3 -c "import time,numpy as np,cupy;from awqfmt.verify import reference_output;from awqfmt.gpu.bench import make_module;m=make_module(8192,28672,128,np.random.default_rng(0));x=np.random.default_rng(1).standard_normal((8,8192)).astype(np.float16);t=time.time();a=reference_output(m,x);t1=time.time();b=reference_output(m,x,cupy);t2=time.time();print(f'reference 8192x28672 M=8: numpy {t1-t:.2f} s, cupy {t2-t1:.2f} s, max rel diff {float(np.abs(a-b).max()/np.abs(a).max()):.1e}')"
