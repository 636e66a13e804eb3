"""Run 13c2: which part of the GEMV breaks the PDL ping-pong chain under graph capture (debug probe)."""
import os, sys
import numpy as np
import cupy as cp
sys.path.insert(0, "tests/gpu")
from test_gemm_gpu import _square_module
from awqfmt.gpu import gemm
from awqfmt.gpu.gemm import prepare, gemm_packed
from awqfmt.logical import encode
from awqfmt.spec import get_spec

K, steps = 4096, 6
PATCHES = {
    "no_trigger": ("    pdl_trigger();\n    Batch cur, nxt;", "    Batch cur, nxt;"),
    "no_early_w": ("    const bool first = PF && cols_ok && r_begin < r_end;", "    const bool first = false;\n    if (PF && cols_ok && r_begin < r_end) { pdl_wait(); load_w(r_begin, cur); load_x(r_begin, cur); }"),
    "wait_first": ("    pdl_trigger();\n    Batch cur, nxt;", "    pdl_wait();\n    pdl_trigger();\n    Batch cur, nxt;"),
}


def run(patch, cfg, mult, rng_seed=5):
    gemm._sources.pop("w4a16_gemv.cu", None)
    gemm._kernels.clear()
    text = gemm._source("w4a16_gemv.cu")
    if patch:
        old, new = PATCHES[patch]
        assert text.count(old) == 1, patch
        gemm._sources["w4a16_gemv.cu"] = text.replace(old, new)
    rng = np.random.default_rng(rng_seed)
    module = _square_module(rng, K, "awq")
    p = prepare("awq", {n: a for n, (a, _) in encode(get_spec("awq"), module).items()}, group_size=128)
    x0 = cp.asarray(rng.standard_normal((1, K)).astype(np.float16))
    outs = [cp.full((1, K), cp.nan, dtype=cp.float16) for _ in range(2)]
    tmps = [cp.full((1, K), cp.nan, dtype=cp.float16) for _ in range(steps)]
    info = {}
    gemm_packed("awq", p, x0, group_size=128, method="gemv", config=cfg, out=tmps[0], info=info)

    def chain():
        src = x0
        for i in range(steps):
            if mult and i % 3 == 2:
                cp.multiply(src, 1, out=tmps[i]); src = tmps[i]
            gemm_packed("awq", p, src, group_size=128, method="gemv", config=cfg, out=outs[i % 2])
            src = outs[i % 2]
    s = cp.cuda.Stream(non_blocking=True)
    with s:
        s.begin_capture(); chain(); g = s.end_capture()
        errs = []
        for rep in range(3):
            for o in outs:
                o.fill(cp.nan)
            g.launch(s); s.synchronize()
            W = module.dequantize(np.float64)
            prev = cp.asnumpy(x0).astype(np.float64)
            for i in range(steps):
                ref = prev @ W
                prev = ref.astype(np.float16).astype(np.float64)
            got = cp.asnumpy(outs[(steps - 1) % 2]).astype(np.float64)
            errs.append(f"{np.linalg.norm(got - ref) / np.linalg.norm(ref):.2e}")
    print(f"patch={patch or '-':10s} cfg={cfg} mult={mult} grid={info.get('grid')}: {errs}", flush=True)


for patch in (None, "no_trigger", "no_early_w", "wait_first"):
    for cfg in (None, {"vw": 2, "fl": 8, "pf": 1, "target_blocks": 16}, {"vw": 2, "fl": 8, "pf": 0, "waves": 1}):
        for mult in (True, False):
            run(patch, cfg, mult)
