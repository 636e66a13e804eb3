# Run 10j: L2 prefetch-size hint on the weight loads (AWQFMT_L2_PREFETCH unset / 128 / 256), M=16 and M=1.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit
for h in "" 256 128; do
  echo "#### AWQFMT_L2_PREFETCH=$h"
  AWQFMT_L2_PREFETCH=$h python3 benchmarks/gemm/compare_chk.py --m 16 --reps 40 2>&1 | grep -E "^==|\"pf\": [12], \"chk\": 0}" 
  AWQFMT_L2_PREFETCH=$h python3 benchmarks/gemm/probe10.py gemv --shapes 4096x4096,8192x8192,8192x28672,28672x8192 --configs '[{"vw":2,"fl":8,"pf":1,"waves":1},{"vw":2,"fl":8,"pf":0,"waves":1}]' 2>&1 | grep -v -i warn
done
