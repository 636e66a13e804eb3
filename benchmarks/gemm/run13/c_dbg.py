"""Run 13c: the PDL ping-pong chain under graph capture, PDL on and off, every step's error (debug probe)."""
import os, sys
import numpy as np
import cupy as cp
sys.path.insert(0, "tests/gpu")
from test_gemm_gpu import _square_module
from awqfmt.gpu.gemm import prepare, gemm_packed
from awqfmt.logical import encode
from awqfmt.spec import get_spec

K, steps = 4096, 6
for pdl in ("1", "0"):
    os.environ["AWQFMT_PDL"] = pdl
    for method, M, cfg in [("gemv", 1, None), ("skinny", 16, {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16})]:
        for graph in (False, True):
            for keep in (False, True):
                rng = np.random.default_rng(5)
                module = _square_module(rng, K, "awq")
                p = prepare("awq", {n: a for n, (a, _) in encode(get_spec("awq"), module).items()}, group_size=128)
                x0 = cp.asarray(rng.standard_normal((M, K)).astype(np.float16))
                outs = [cp.full((M, K), cp.nan, dtype=cp.float16) for _ in range(2)]
                snaps = [cp.full((M, K), cp.nan, dtype=cp.float16) for _ in range(steps)]
                tmps = [cp.full((M, K), cp.nan, dtype=cp.float16) for _ in range(steps)]
                info = {}
                gemm_packed("awq", p, x0, group_size=128, method=method, config=cfg, out=tmps[0], info=info)
                def chain():
                    src = x0
                    for i in range(steps):
                        if i % 3 == 2:
                            cp.multiply(src, 1, out=tmps[i]); src = tmps[i]
                        gemm_packed("awq", p, src, group_size=128, method=method, config=cfg, out=outs[i % 2])
                        src = outs[i % 2]
                        if keep:
                            snaps[i][...] = src
                s = cp.cuda.Stream(non_blocking=True)
                with s:
                    if graph:
                        s.begin_capture(); chain(); g = s.end_capture(); g.launch(s)
                    else:
                        chain()
                    s.synchronize()
                W = module.dequantize(np.float64)
                prev = cp.asnumpy(x0).astype(np.float64)
                errs = []
                for i in range(steps):
                    ref = prev @ W
                    got = cp.asnumpy(snaps[i] if keep else outs[i % 2]).astype(np.float64)
                    if keep or i == steps - 1:
                        errs.append(f"{np.linalg.norm(got - ref) / np.linalg.norm(ref):.2e}")
                        prev = got if keep else ref.astype(np.float16).astype(np.float64)
                    else:
                        prev = ref.astype(np.float16).astype(np.float64)
                print(f"pdl={pdl} {method} M={M} graph={graph} snapshots={keep} pdl_used={info.get('pdl')}: {errs}", flush=True)
