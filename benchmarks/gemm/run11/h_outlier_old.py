"""Run 11h: the outlier input of tests/gpu/test_gemm_gpu.py::test_activation_outliers through the GEMV as it was
before the fp32 fallback (commit c288579^) and as it is now: the old one must give non-finite outputs (the test can
fail), the new one the reference. Needs the old source beside this script (not committed: it is that commit's file):
    git show c288579^:kernels/w4a16_gemv.cu > benchmarks/gemm/run11/pre_fallback_w4a16_gemv.cu"""
import numpy as np
import cupy as cp

from awqfmt.gpu import gemm
from awqfmt.gpu.bench import make_module
from awqfmt.logical import encode
from awqfmt.spec import get_spec

rng = np.random.default_rng(5)
K = 1024
module = make_module(K, 512, 128, rng)
tensors = {n: a for n, (a, _) in encode(get_spec("awq"), module).items()}
x = rng.standard_normal((1, K)).astype(np.float16)
for start in (64, 520):
    x[:, start:start + 8] = 8000.0
ref = x.astype(np.float64) @ module.dequantize(np.float64)
common = (gemm.kernels_dir() / "w4a16_common.cuh").read_text()
for name, path in (("before the fallback", "benchmarks/gemm/run11/pre_fallback_w4a16_gemv.cu"),
                   ("now", str(gemm.kernels_dir() / "w4a16_gemv.cu"))):
    gemm._sources["w4a16_gemv.cu"] = open(path).read().replace('#include "w4a16_common.cuh"', common)
    gemm._kernels.clear()
    y = cp.asnumpy(gemm.gemm_packed("awq", tensors, x, group_size=128, method="gemv", check=True)).astype(np.float64)
    fin = np.isfinite(y)
    rel = np.linalg.norm(np.where(fin, y, 0) - ref) / np.linalg.norm(ref)
    print(f"GEMV {name}: {int((~fin).sum())} of {y.size} outputs non-finite, rel err of the finite ones {rel:.2e}")
