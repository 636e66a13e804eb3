# Run 14d: per-instruction stall sampling of the shipped skinny kernel at 8192x8192, M = 16 (16-warp config),
# to find where its warps wait. Writes $OUT/skinny-src.csv (ncu source page, SASS view).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit
cat > /tmp/one.py <<'PY'
import cupy as cp, numpy as np
from awqfmt.gpu.bench import make_module
from awqfmt.gpu.gemm import gemm_packed, prepare
from awqfmt.logical import encode
from awqfmt.spec import get_spec
K = N = 8192; M = 16
rng = np.random.default_rng(1)
mod = make_module(K, N, 128, rng)
p = prepare("awq", {n: cp.asarray(a) for n, (a, _) in encode(get_spec("awq"), mod).items()}, group_size=128)
x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16)); y = cp.empty((M, N), cp.float16)
for _ in range(3):
    gemm_packed("awq", p, x, group_size=128, out=y, method="skinny", config={"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16})
cp.cuda.Device().synchronize()
PY
timeout 300 ncu --kernel-name regex:skinny --launch-skip 1 --launch-count 1 --section SourceCounters --section WarpStateStats --import-source no -o /tmp/sk python3 /tmp/one.py > /dev/null 2>&1
ncu --import /tmp/sk.ncu-rep --page source --print-source sass --csv > $OUT/skinny-src.csv 2>&1
ncu --import /tmp/sk.ncu-rep --page details --section SourceCounters > $OUT/skinny-details.txt 2>&1
wc -l $OUT/skinny-src.csv; head -3 $OUT/skinny-src.csv | cut -c1-400; tail -40 $OUT/skinny-details.txt
