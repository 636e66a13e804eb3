"""Run-11 probes (2026-11-25 session 8): what the skinny kernel's M = 16 time is made of, and where the
dequantize + cuBLAS path loses time at M = 4096.

Run on the GPU:  PYTHONPATH=. python3 benchmarks/gemm/probe11.py whatif|pair [...]
  whatif  time the skinny kernel as shipped and with its source patched so that one kind of load always reads
          the same two units (it then hits L1/L2 instead of streaming): the time a load kind costs is the
          difference. The outputs are wrong on purpose; nothing here is a kernel to ship. Rounds alternate
          shipped / patched, medians reported.
  pair    M = 4096: each kernel's duration inside a sequence of dequantize, matmul, dequantize, matmul, ...
          (CUDA events between all of them) against each timed alone, and cuBLAS vs ours in ABBA order
          (baseline, ours, ours, baseline, ...) so that neither always runs second.
  ab      one kernel file before (--old) and after a change (the working tree), alternating rounds; with
          --file w4a16_common.cuh the shared header, under the --kind method's kernel file.
  wdata   cuBLAS fp16 at M = 4096 on weights of different values (random N(0,1), N(0,0.02), dequantized).
Writes $OUT/probe11-<mode>.json when OUT is set; prints one line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import numpy as np

# name -> (text in w4a16_gemm.cu, replacement): the unit-dependent part of one load's offset made periodic.
# GEMV_PATCHES: the same for w4a16_gemv.cu (--kind gemv).
GEMV_PATCHES = {
    # every block writes y directly: no split-K workspace atomics, fence, counter or conversion pass
    "no_splitk": ("const bool whole = gridDim.y == 1;  // this block alone covers K", "const bool whole = true;"),
    "half_rows": ("const int r_end = min(K, r_begin + rpt);", "const int r_end = min(K, r_begin + rpt / 2);"),
    # (run 12) the parts of the split-K tail: partial sums stored instead of atomically added; no fence before
    # the tile counter; no last-block conversion pass
    "store_not_atomic": ("else atomicAdd(&ws[o], v);", "else ws[o] = v;"),
    "no_fence": ("if (!whole) {\n        __threadfence();", "if (!whole) {"),
    "no_last": ("if (s_last) {", "if (false) {"),
    # every thread asks L2 for all of its weight rows before the first load (HBM busy from the start)
    "l2_prefetch": ("    float acc[MT][COLS];\n",
                    "    if constexpr (KF && !GPTQ) {\n"
                    "        if (cols_ok) for (int b = r_begin; b < r_end; ++b)\n"
                    "            asm volatile(\"prefetch.global.L2 [%0];\" ::\"l\"(qw_t + (u32)b * (u32)NW));\n"
                    "    }\n    float acc[MT][COLS];\n"),
    "l2_prefetch_half": ("    float acc[MT][COLS];\n",
                    "    if constexpr (KF && !GPTQ) {\n"
                    "        if (cols_ok) for (int b = r_begin + (r_end - r_begin) / 2; b < r_end; ++b)\n"
                    "            asm volatile(\"prefetch.global.L2 [%0];\" ::\"l\"(qw_t + (u32)b * (u32)NW));\n"
                    "    }\n    float acc[MT][COLS];\n"),
}
PATCHES = {
    "x_fixed": ("st.x[nt] = ldx_v4(x_t + (xo[nt] + (u32)(u << 5)));",
                "st.x[nt] = ldx_v4(x_t + (xo[nt] + (u32)((u & 1) << 5)));"),
    "w_fixed": ("u32 o = (u32)u * rows32;", "u32 o = (u32)(u & 1) * rows32;"),
    "zs_fixed": ("const int g = group_of(u, gm, gmask);\n        ldg_words<WC>(qz_t",
                 "const int g = group_of(u & 1, gm, gmask);\n        ldg_words<WC>(qz_t"),
    # every block writes y directly: no split-K workspace atomics, fence, counter or conversion pass
    "no_splitk": ("const bool whole = (bu_begin == 0 && bu_end == n_units);", "const bool whole = true;"),
    # each block does half its units (the slope of time over work; the counters never complete)
    "half_units": ("const int bu_end = min(n_units, bu_begin + units_per_split);",
                   "const int bu_end = min(n_units, bu_begin + units_per_split / 2);"),
    # (run 12) every thread asks L2 for all rows of all its units before the first load
    "l2_prefetch": ("    auto step = [&](int i, int u, const Stage& st) {",
                    "    if constexpr (FAST) {\n"
                    "        for (int i = 0;; ++i) {\n"
                    "            const int u = unit_of(i);\n"
                    "            if (u >= u_end) break;\n"
                    "            for (int j = 0; j < 8; ++j)\n"
                    "                asm volatile(\"prefetch.global.L2 [%0];\" ::\"l\"(qw_t + ((u32)u * rows32 + (u32)j * (u32)NW)));\n"
                    "        }\n    }\n"
                    "    auto step = [&](int i, int u, const Stage& st) {"),
}
# (run 16d) blocks read x from one of 8 copies (blockIdx.x % 8; probe x buffers hold 8 x M rows): do 128
# blocks reading the same x lines at the same moment queue on the L2 slices that hold them?
_XO = "for (int nt = 0; nt < NT; ++nt) xo[nt] = (u32)min(tok0 + 8 * nt + r, M - 1) * (u32)K + (u32)(8 * c);"
PATCHES["x_spread"] = (_XO, _XO[:-1] + " + (u32)((blockIdx.x & 7) * M) * (u32)K;")
PATCHES["x_spread2"] = (_XO, _XO[:-1] + " + (u32)((blockIdx.x & 1) * M) * (u32)K;")
# (run 16e) the unit's zeros/scales/x (one unit ahead) requested before the weights two units ahead, instead of
# after them: if a warp's loads return in order, x/zeros/scales wait behind the later unit's weight loads.
_FAST2_R = "                if (unit_of(i + K6 + 1) < u_end) load_rest(unit_of(i + K6 + 1), RNXT);                     \\\n"
PATCHES["rest_first"] = (None, None)  # filled below (needs _FAST2_W)
# (run 16f) block reduction through up to 8 shared-memory slices instead of 4: two barrier rounds instead of
# four with 16 warps, one instead of two with 8 (outputs stay right; a candidate change, not a what-if).
PATCHES["red8"] = [
    ("    __shared__ float red[4 * FRAG];",
     "    constexpr int SL = (8 * FRAG * 4 <= 48 * 1024) ? 8 : 4;  // reduction slices\n"
     "    __shared__ float red[SL * FRAG];"),
    ("        float* mine = red + (warp & 3) * FRAG;", "        float* mine = red + (warp % SL) * FRAG;"),
    ("""#pragma unroll
        for (int q = 1; q < W / 4; ++q) {
            if (W == 8 ? warp >= 4 : (warp >> 2) == q) put(q > 1);
            __syncthreads();
        }
        if (warp < 4) put(true);
        __syncthreads();""",
     """if constexpr (W > SL) {
            if (warp >= SL) put(false);
            __syncthreads();
            if (warp < SL) put(true);
        } else {
            put(false);
        }
        __syncthreads();"""),
    ("        const float v = red[idx] + red[FRAG + idx] + red[2 * FRAG + idx] + red[3 * FRAG + idx];",
     "        float v = 0.f;\n#pragma unroll\n        for (int sl = 0; sl < SL; ++sl) v += red[sl * FRAG + idx];"),
]
# (run 16c) each lane asks L2 for one weight row of the unit D ahead of the one being computed (the warp's 32
# rows, one 32-byte piece each), on the pf = 2 register path: more of the weight stream in flight with no
# registers. Source change only inside the FAST2 step macro.
_FAST2_W = "                if (unit_of(i + K6 + 2) < u_end) load_w(unit_of(i + K6 + 2), WNXT2);                       \\\n"
PATCHES["rest_first"] = (_FAST2_W + _FAST2_R, _FAST2_R + _FAST2_W)
for _d in (3, 4, 6, 8):
    PATCHES[f"wpf{_d}"] = (_FAST2_W, _FAST2_W + (
        f"                if (unit_of(i + K6 + {_d}) < u_end) asm volatile(\"prefetch.global.L2 [%0];\" :: \"l\"("
        f"qw_t + ((u32)unit_of(i + K6 + {_d}) * rows32 + (u32)r * (u32)NW)));  \\\n"))


def _patched(names, kind="skinny"):
    from awqfmt.gpu import gemm

    fname, table = ("w4a16_gemv.cu", GEMV_PATCHES) if kind == "gemv" else ("w4a16_gemm.cu", PATCHES)
    gemm._sources.pop(fname, None)
    text = gemm._source(fname)
    for name in names:
        for old, new in (table[name] if isinstance(table[name], list) else [table[name]]):
            if text.count(old) != 1:
                raise SystemExit(f"patch {name}: expected one match in {fname}, found {text.count(old)}")
            text = text.replace(old, new)
    gemm._sources[fname] = text
    gemm._kernels.clear()


def _case(shape: str, m: int, rng, l2: int, reps: int):
    """A K x N AWQ module with weight copies rotated past L2, random x [m, K], an output buffer, and cuBLAS
    fp16's time for the same product (torch, graph-timed)."""
    import cupy as cp

    from awqfmt.gpu.bench import make_module, prepared_copies, torch_matmul_ms

    K, N = (int(v) for v in shape.split("x"))
    module = make_module(K, N, 128, rng)
    preps = prepared_copies(module, "awq", l2)
    # 8 copies of x in one buffer, the first m rows passed as x (the x_spread patches read the others)
    x1 = rng.standard_normal((m, K), dtype=np.float32).astype(np.float16)
    x = cp.asarray(np.concatenate([x1] * 8))[:m]
    y = cp.empty((m, N), cp.float16)
    return K, N, preps, x, y, torch_matmul_ms(x, N, reps, l2)


def mode_whatif(args, out):
    import cupy as cp

    from awqfmt.gpu import gemm
    from awqfmt.gpu.bench import device_info, time_cupy
    from awqfmt.gpu.gemm import gemm_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(11)
    names = [p for p in args.patches.split(",") if p]
    # --all: one more variant with every patch that removes a part of the work (not the half_* slopes)
    variants = [[]] + [[p] for p in names] + ([[p for p in names if not p.startswith("half")]]
                                              if args.all else [])
    for shape in args.shapes.split(","):
        K, N, preps, x, y, cub = _case(shape, args.m, rng, l2, args.reps)
        cfg = json.loads(args.cfg)
        times = {"+".join(v) or "shipped": [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                _patched(v, args.kind)
                t = time_cupy([lambda p=p: gemm_packed("awq", p, x, group_size=128, out=y, method=args.kind,
                                                       config=cfg) for p in preps], args.reps)["ms"]
                times["+".join(v) or "shipped"].append(t)
                gemm._workspaces.clear()  # a patched kernel may leave the split-K workspace non-zero
        _patched([], args.kind)
        base = statistics.median(times["shipped"])
        for name, ts in times.items():
            med = statistics.median(ts)
            row = {"K": K, "N": N, "M": args.m, "cfg": cfg, "variant": name, "ms": med, "rounds": ts,
                   "cublas_ms": cub, "speedup": cub / med, "saved": 1 - med / base}
            out.append(row)
            print(f"{K}x{N} M={args.m} {name:22s} {med:.4f} ms  x{cub / med:.2f} cuBLAS  "
                  f"saves {100 * (1 - med / base):5.1f}%", flush=True)
        del preps
        cp.get_default_memory_pool().free_all_blocks()


def mode_ab(args, out):
    """One kernel file as committed before (--old, a copy of it) against the working tree's, same data,
    alternating rounds; each configuration of --cfgs for method --kind at --m tokens."""
    import cupy as cp

    from awqfmt.gpu import gemm
    from awqfmt.gpu.bench import device_info, time_cupy

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(13)
    fname = os.path.basename(args.file)
    kdir = gemm.kernels_dir()
    if fname == "w4a16_common.cuh":  # the header before and after: the method's kernel file from the tree
        commons = {"old": open(args.old).read(), "new": (kdir / fname).read_text()}
        fname = "w4a16_gemv.cu" if args.kind == "gemv" else "w4a16_gemm.cu"
        texts = {w: (kdir / fname).read_text() for w in ("old", "new")}
    else:
        texts = {"old": open(args.old).read(), "new": (kdir / fname).read_text()}
        commons = {w: (kdir / "w4a16_common.cuh").read_text() for w in ("old", "new")}
    for shape in args.shapes.split(","):
        K, N, preps, x, y, cub = _case(shape, args.m, rng, l2, args.reps)
        for cfg in json.loads(args.cfgs):
            times = {"old": [], "new": []}
            for _ in range(args.rounds):
                for which in ("old", "new"):
                    gemm._sources[fname] = texts[which].replace('#include "w4a16_common.cuh"', commons[which])
                    gemm._kernels.clear()
                    times[which].append(time_cupy([lambda p=p: gemm.gemm_packed(
                        "awq", p, x, group_size=128, out=y, method=args.kind, config=cfg) for p in preps],
                        args.reps)["ms"])
            old_ms, new_ms = statistics.median(times["old"]), statistics.median(times["new"])
            out.append({"K": K, "N": N, "M": args.m, "kind": args.kind, "cfg": cfg, "old_ms": old_ms,
                        "new_ms": new_ms, "rounds": times, "cublas_ms": cub})
            print(f"{K}x{N} M={args.m} {args.kind} {json.dumps(cfg)}: old {old_ms:.4f} ms (x{cub / old_ms:.2f}) "
                  f"new {new_ms:.4f} ms (x{cub / new_ms:.2f}) new/old {new_ms / old_ms:.3f}", flush=True)
        gemm._sources.pop(fname, None)
        gemm._kernels.clear()
        del preps
        cp.get_default_memory_pool().free_all_blocks()


def mode_wdata(args, out):
    """M = 4096: does cuBLAS fp16 speed depend on the weight values? x @ W with W random N(0, 1) (the bench
    baseline), N(0, 0.02) (an LLM's scale), and the module's dequantized weights (what the dequantize path
    multiplies), each as one copy and as copies rotated past L2; ABBA-ordered rounds, medians."""
    import cupy as cp

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies, time_cupy
    from awqfmt.gpu.gemm import dequantize_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(14)
    M = 4096
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
        y = cp.empty((M, N), cp.float16)
        n_rot = max(2, min(8, -(-3 * l2 // (K * N * 2))))
        deq = dequantize_packed("awq", prepared_copies(module, "awq", 0)[0], group_size=128)
        kinds = {
            "normal(0,1)": lambda: cp.random.standard_normal((K, N), dtype=cp.float32).astype(cp.float16),
            "normal(0,0.02)": lambda: (0.02 * cp.random.standard_normal((K, N), dtype=cp.float32)).astype(cp.float16),
            "dequantized": lambda: deq.copy(),
        }
        mats = {k: [f() for _ in range(n_rot)] for k, f in kinds.items()}
        fns = {}
        for k, Ws in mats.items():
            fns[k + " 1 copy"] = [lambda W=Ws[0]: cp.matmul(x, W, out=y)]
            fns[k + f" {n_rot} copies"] = [lambda W=W: cp.matmul(x, W, out=y) for W in Ws]
        names = list(fns)
        times = {n: [] for n in names}
        for r in range(args.rounds):
            for n in (names if r % 2 == 0 else names[::-1]):
                times[n].append(time_cupy(fns[n], args.reps)["ms"])
        for n in names:
            med = statistics.median(times[n])
            out.append({"K": K, "N": N, "M": M, "weights": n, "ms": med, "rounds": times[n]})
            print(f"{K}x{N} M={M} W {n:26s} {med:.4f} ms", flush=True)
        del mats, fns
        cp.get_default_memory_pool().free_all_blocks()


def mode_pair(args, out):
    import cupy as cp

    from awqfmt.gpu.bench import device_info, make_module, prepared_copies
    from awqfmt.gpu.gemm import dequantize_packed

    l2 = device_info()["l2_bytes"] or (50 << 20)
    rng = np.random.default_rng(12)
    M = 4096
    for shape in args.shapes.split(","):
        K, N = (int(v) for v in shape.split("x"))
        module = make_module(K, N, 128, rng)
        preps = prepared_copies(module, "awq", l2)
        x = cp.asarray(rng.standard_normal((M, K), dtype=np.float32).astype(np.float16))
        y = cp.empty((M, N), cp.float16)
        W = cp.empty((K, N), cp.float16)
        B = [cp.asarray(rng.standard_normal((K, N), dtype=np.float32).astype(np.float16)) for _ in range(2)]

        def seq(steps):
            """Run the steps in order, each between two events; return each step's ms."""
            ev = [cp.cuda.Event() for _ in range(len(steps) + 1)]
            ev[0].record()
            for i, s in enumerate(steps):
                s()
                ev[i + 1].record()
            ev[-1].synchronize()
            return [cp.cuda.get_elapsed_time(ev[i], ev[i + 1]) for i in range(len(steps))]

        deq = [lambda p=p: dequantize_packed("awq", p, group_size=128, out=W) for p in preps]
        mm = lambda: cp.matmul(x, W, out=y)  # noqa: E731
        base = [lambda b=b: cp.matmul(x, b, out=y) for b in B]
        n = args.reps
        seq([deq[0], mm, base[0]] * 2)  # warm-up (compiles, cuBLAS heuristics)
        in_seq = seq([f for i in range(n) for f in (deq[i % len(deq)], mm)])
        alone_d = seq([deq[i % len(deq)] for i in range(n)])
        alone_m = seq([mm] * n)
        # ABBA: baseline block, ours block, ours block, baseline block, ...; each block n calls
        blocks = {"cublas": [], "ours": []}
        order = ["cublas", "ours", "ours", "cublas"] * args.rounds
        for who in order:
            if who == "cublas":
                ts = seq([base[i % 2] for i in range(n)])
                blocks[who].append(statistics.median(ts))
            else:
                ts = seq([f for i in range(n) for f in (deq[i % len(deq)], mm)])
                blocks[who].append(statistics.median([a + b for a, b in zip(ts[::2], ts[1::2])]))
        row = {"K": K, "N": N, "M": M,
               "dequant_in_seq_ms": statistics.median(in_seq[::2]), "matmul_in_seq_ms": statistics.median(in_seq[1::2]),
               "dequant_alone_ms": statistics.median(alone_d), "matmul_alone_ms": statistics.median(alone_m),
               "abba_cublas_ms": blocks["cublas"], "abba_ours_ms": blocks["ours"],
               "abba_ratio": statistics.median(blocks["cublas"]) / statistics.median(blocks["ours"])}
        out.append(row)
        print(json.dumps(row), flush=True)
        del preps, B
        cp.get_default_memory_pool().free_all_blocks()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["whatif", "pair", "ab", "wdata"])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--shapes", default="8192x8192,8192x28672")
    ap.add_argument("--cfg", default='{"wc": 1, "nt": 2, "pf": 2, "chk": 0}')
    ap.add_argument("--patches", default="x_fixed,w_fixed,zs_fixed")
    ap.add_argument("--all", action="store_true", help="also one variant with every patch but half_*")
    ap.add_argument("--file", default="w4a16_gemv.cu", help="ab: the kernel file compared")
    ap.add_argument("--old", help="ab: a copy of that file as it was before")
    ap.add_argument("--kind", default=None, help="gemm_packed method (whatif: skinny, ab: gemv by default)")
    ap.add_argument("--cfgs", default='[{"vw": 2, "fl": 8, "pf": 1, "waves": 1}, {"vw": 2, "fl": 8, "pf": 0, "waves": 1}]')
    args = ap.parse_args()
    out: list = []
    args.kind = args.kind or ("gemv" if args.mode == "ab" else "skinny")
    {"whatif": mode_whatif, "pair": mode_pair, "ab": mode_ab, "wdata": mode_wdata}[args.mode](args, out)
    if os.environ.get("OUT") and out:
        with open(os.path.join(os.environ["OUT"], f"probe11-{args.mode}.json"), "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
