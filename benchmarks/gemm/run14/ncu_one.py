"""Launch the frag and skinny kernels a few times on one shape for Nsight Compute (run 14b; needs the source of
commit a677e53, where the frag kernel lived before it was reverted)."""
import sys

import cupy as cp
import numpy as np

from awqfmt.gpu.bench import make_module
from awqfmt.gpu.gemm import gemm_packed, prepare
from awqfmt.logical import encode
from awqfmt.spec import get_spec

K, N, M = (int(v) for v in sys.argv[1:4])
rng = np.random.default_rng(1)
mod = make_module(K, N, 128, rng)
p = prepare("awq", {n: cp.asarray(a) for n, (a, _) in encode(get_spec("awq"), mod).items()}, group_size=128)
x = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
y = cp.empty((M, N), cp.float16)
for _ in range(3):
    gemm_packed("awq", p, x, group_size=128, out=y, method="frag", config={"d": 4, "pf": 1, "warps": 8, "mb": 1})
    gemm_packed("awq", p, x, group_size=128, out=y, method="skinny",
                config={"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16})
cp.cuda.Device().synchronize()
