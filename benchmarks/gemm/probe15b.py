"""Run-15b probe (2026-11-25 session 12): do consecutive launches overlap more when a launch leaves room on the SM?

probe15 (run 15a) showed a read-only kernel at 4096x4096 taking 4.64 us launched plainly and 3.43 us with PDL:
with programmatic dependent launch the next launch's blocks start, and request their bytes, while the launch
before is still running, if the SM has room for them. The shipped GEMV (2 blocks of 256 threads x 128 registers
per SM) and 16-warp skinny kernel (one 512-thread block x 128 registers) fill the register file, so the next
launch's blocks wait for this one's to exit. This times, for the missed cells, the shipped configuration against
ones whose grid fills half the register file (GEMV waves 0.5: one block per SM; skinny with 8 warps aimed at one
block per SM), each with and without PDL, in one run, every output checked against float64.

Run 15c (`probe15b.py c`): the same with l2pf, the block's whole slice of weights, zeros and scales requested into
L2 (cp.async.bulk.prefetch) before the PDL wait, so that the next launch's blocks, once resident, pull their bytes
while the launch before still runs.

Run 15f (`probe15b.py f`, 4096x4096 only): the skinny kernel with sg=1 (each warp's weights staged in shared
memory before the PDL wait, one block per SM) at M = 1, 8, 16 against the shipped configurations. sg=1 was
measured and reverted: its kernel and host code are in commit 1a347b4, which this set needs.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe15b.py [b|c|f]   (writes $OUT/probe15<b|c|f>.json)
"""

from __future__ import annotations

import json
import os

import numpy as np

def _with(method, configs):
    return [(method, c) for c in configs]


CASES_B = {
    1: _with("gemv", [{"vw": 2, "fl": 8, "pf": 1, "waves": 1}, {"vw": 2, "fl": 8, "pf": 1, "waves": 0.5},
                      {"vw": 1, "fl": 8, "pf": 1, "waves": 0.5}, {"vw": 2, "fl": 8, "pf": 1, "waves": 0.25},
                      {"vw": 2, "fl": 8, "pf": 0, "waves": 0.5}]),
    16: _with("skinny", [{"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16},
                         {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "sm_mult": 1},
                         {"wc": 1, "nt": 2, "pf": 1, "chk": 0, "sm_mult": 1},
                         {"wc": 1, "nt": 1, "pf": 1, "chk": 0, "sm_mult": 1},
                         {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "sm_mult": 0.5}]),
}
# run 15c: the same grids with the block's slice requested into L2 before the PDL wait (l2pf)
_G = {"vw": 2, "fl": 8, "pf": 1}
_S = {"wc": 1, "nt": 2, "pf": 2, "chk": 0}
CASES_C = {
    1: _with("gemv", [dict(_G, waves=1), dict(_G, waves=1, l2pf=1), dict(_G, waves=0.5, l2pf=1),
                      dict(_G, waves=0.25, l2pf=1), {"vw": 1, "fl": 8, "pf": 1, "waves": 0.5, "l2pf": 1}]),
    16: _with("skinny", [dict(_S, warps=16), dict(_S, warps=16, l2pf=1), dict(_S, sm_mult=1, l2pf=1),
                         dict(_S, sm_mult=0.5, l2pf=1),
                         {"wc": 1, "nt": 2, "pf": 1, "chk": 0, "sm_mult": 1, "l2pf": 1}]),
}
# run 15f: the skinny kernel with each warp's weights staged in shared memory before the PDL wait (sg), one block
# per SM, against the shipped configurations (4096x4096 only: larger slices do not fit)
CASES_F = {
    1: [("gemv", {"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1}), ("skinny", {"wc": 1, "nt": 1, "sg": 1}),
        ("skinny", {"wc": 2, "nt": 1, "sg": 1}), ("skinny", {"wc": 1, "nt": 1, "sg": 1, "splits": 1})],
    8: [("skinny", {"wc": 2, "nt": 1, "pf": 1, "chk": 0}), ("skinny", {"wc": 1, "nt": 1, "sg": 1}),
        ("skinny", {"wc": 2, "nt": 1, "sg": 1})],
    16: [("skinny", dict(_S, warps=16)), ("skinny", {"wc": 1, "nt": 2, "sg": 1}),
         ("skinny", {"wc": 1, "nt": 2, "sg": 1, "splits": 1}), ("skinny", {"wc": 1, "nt": 2, "sg": 1, "splits": 4}),
         ("skinny", {"wc": 2, "nt": 1, "sg": 1}), ("skinny", {"wc": 1, "nt": 1, "sg": 1})],
}
SHAPES_BY_SET = {"b": [(4096, 4096), (8192, 8192)], "c": [(4096, 4096), (8192, 8192)], "f": [(4096, 4096)]}


def main() -> int:
    import sys

    import cupy as cp

    from awqfmt.gpu.bench import _reference_check, device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed
    from probe10 import _module  # the module and its copies rotated past 3x L2
    from probe15 import cell_inputs

    info = device_info()
    l2 = info["l2_bytes"] or (50 << 20)
    which = sys.argv[1] if len(sys.argv) > 1 else "b"
    cases = {"b": CASES_B, "c": CASES_C, "f": CASES_F}[which]
    rng = np.random.default_rng(151)
    rows = []
    for K, N in SHAPES_BY_SET[which]:
        module, preps, _ = _module(K, N, rng)
        for M, pairs in cases.items():
            x_host, x, y, cols, cublas = cell_inputs(K, N, M, rng, l2)
            for rnd in range(2):  # two rounds: the spread between them is the noise
                for method, cfg in pairs:
                    for pdl in (1, 0):
                        c = dict(cfg, pdl=pdl)
                        y.fill(float("nan"))
                        ran: dict = {}
                        try:
                            gemm_packed("awq", preps[0], x, group_size=128, out=y, method=method, config=c,
                                        check=True, info=ran)
                        except Exception as exc:  # a configuration this shape cannot take: say so, go on
                            print(f"{K}x{N} M={M:2d} r{rnd} {method:6s} {json.dumps(c)}: {exc}", flush=True)
                            continue
                        err = _reference_check(module, x_host, y, cols)
                        ok = bool(cp.isfinite(y).all())
                        t = time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method=method,
                                                               config=c) for p in preps], 100)["ms"]
                        row = {"K": K, "N": N, "M": M, "round": rnd, "method": method, "cfg": c, "ms": t,
                               "cublas_ms": cublas, "x_cublas": cublas / t, "rel_err": err, "all_written": ok,
                               "grid": list(ran.get("grid", ())), "threads": ran.get("threads", 256)}
                        rows.append(row)
                        print(f"{K}x{N} M={M:2d} r{rnd} {method:6s} {json.dumps(c):70s} grid={row['grid']} "
                              f"{t * 1e3:6.2f} us  x{cublas / t:5.2f}  err {err:.1e} {'ok' if ok else 'UNWRITTEN'}",
                              flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], f"probe15{which}.json"), "w") as f:
            json.dump({"device": info, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
