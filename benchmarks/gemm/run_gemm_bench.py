"""Run the W4A16 GEMM benchmark and write benchmarks/gemm/results.json and RESULTS.md.

    PYTHONPATH=. python3 benchmarks/gemm/run_gemm_bench.py [--out-dir DIR] [--reps N] [--quick]

Needs CuPy and an NVIDIA GPU (torch optional: a second cuBLAS baseline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v, nd=3):
    return "-" if v is None else f"{v:.{nd}f}"


def write_markdown(path: Path, doc: dict) -> None:
    rows, info = doc["rows"], doc["device"]
    summ = doc["summary"]
    L = []
    L.append("# W4A16 GEMM kernels vs cuBLAS fp16\n")
    L.append(f"Measured {doc['date']} on {info['name']} ({info['sm_count']} SMs, L2 {info['l2_bytes'] >> 20} MiB), "
             f"driver {info.get('nvidia_smi', '').split(',')[0] or info['driver_version']}, CUDA driver API "
             f"{info['driver_version']}, runtime {info['runtime_version']}, CuPy {info['cupy_version']}"
             f"{', torch ' + info['torch_version'] if 'torch_version' in info else ''}. "
             f"Device-to-device copy: {doc['copy_bandwidth'] / 1e12:.2f} TB/s (bytes read + written).\n")
    L.append("Method: fp16 x [M, K] times 4-bit weights, group size 128, random data (codes 0-15, zeros 1-15, scales "
             "0.001-0.021). Times are medians of CUDA-event-timed samples after warm-up: the GEMV and skinny kernels "
             "and `torch.matmul` as CUDA-graph replays of 10 launches; `cupy.matmul` and the dequantize + "
             "`cupy.matmul` path as 10 launches, because CuPy refuses cuBLAS calls during stream capture. Every "
             "sample, ours and cuBLAS alike, starts behind a kernel that spins on the GPU clock "
             "(kernels/bench_hold.cu, nvbench's blocking-kernel idea) while the host queues the sample's launches, "
             "so a sample is the kernels back to back on the GPU, without the host's launch latency in front of or "
             "between them (a sample whose queuing outlasted the spin is redone with a longer spin). L2 is **not "
             "flushed**; instead "
             "consecutive launches read different copies of the weights (working set >= 3x L2), so weights stream "
             "from HBM, for cuBLAS as for our kernels. "
             "cuBLAS fp16 = the faster of `cupy.matmul` (timed before and after our kernels, faster kept) and "
             "`torch.matmul` on a random fp16 [K, N] matrix, in the same run. Rows on the dequantize + cuBLAS "
             "path (M >= 256, compute-bound, where clocks and temperature drift by more than the margins measured) "
             "are then timed in 8 alternating rounds in ABBA order (baseline first, then ours first, ...: neither "
             "always runs on a GPU the other just heated), one timing per side and round, the baseline in the "
             "library that was faster before (`alternating_baseline`), and the two medians are reported "
             "(`alternating` in results.json holds every round). Small-M kernels: "
             "each layout tuned on its own (`tune_small`: the skinny kernel's candidates, and for M <= 4 the GEMV's, "
             "same candidates for all layouts; `method=\"auto\"` then runs the faster of the two for that shape). `BW/copy` = fewest bytes the "
             "W4A16 GEMM must move (packed weights, zeros, scales, x, y) / time, as a fraction of the copy rate. "
             "**PDL**: the GEMV and skinny kernels of a prepared module are launched with programmatic dependent "
             "launch (awqfmt/gpu/launch.py): a launch may start while the kernel before it in the stream "
             "finishes, requests its first weights, and waits (`griddepcontrol.wait`) before it reads x or writes "
             "anything; tuning keeps it per shape only where it is faster. In these samples the kernel before is "
             "the previous call of the same GEMM; in a model it is whatever kernel precedes the layer, so the "
             "overlap there depends on that kernel. cuBLAS (torch and CuPy) launches without it. The `no PDL` "
             "columns time the same kernels with every launch waiting for the previous one.\n")
    L.append(f"Targets (speed-up over cuBLAS fp16): M=1 >= 3x, M=16 >= 2.5x, M=4096 >= 0.9x. "
             f"**{summ['targets_met']} of {summ['targets_checked']} met.**"
             + ("" if not summ["missed"] else " Missed: " + "; ".join(summ["missed"]) + ".")
             + (f" With every launch waiting for the one before it (no PDL; columns `no PDL`): "
                f"{summ['targets_met_no_pdl']} of {summ['targets_checked']}." if "targets_met_no_pdl" in summ else "")
             + "\n")
    L.append("| K x N | M | path | cuBLAS ms | AWQ ms | x cuBLAS | target | no PDL ms | x cuBLAS, no PDL | BW/copy | "
             "logical (shift) ms | logical (lop3) ms | GPTQ ms | shift / AWQ | lop3-natural / AWQ | rel err |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        tgt = r.get("target")
        met = "" if tgt is None else (f">= {tgt}: yes" if r.get("target_met") else f">= {tgt}: **no**")
        L.append(f"| {r['K']}x{r['N']} | {r['M']} | {r.get('method')}{' + PDL' if r.get('pdl') else ''} | "
                 f"{_fmt(r.get('cublas_ms'), 4)} | "
                 f"{_fmt(r.get('awq_ms'), 4)} | {_fmt(r.get('speedup'), 2)} | {met} | "
                 f"{_fmt(r.get('awq_no_pdl_ms'), 4)} | {_fmt(r.get('speedup_no_pdl') if r.get('pdl') else None, 2)} | "
                 f"{_fmt(r.get('bw_frac'), 2)} | "
                 f"{_fmt(r.get('logical_ms'), 4)} | {_fmt(r.get('logical_lop3_ms'), 4)} | {_fmt(r.get('gptq_ms'), 4)} | "
                 f"{_fmt(r.get('logical_over_awq'), 3)} | {_fmt(r.get('logical_lop3_over_awq'), 3)} | "
                 f"{r.get('rel_err', 0):.1e} |")
    L.append("")
    deq = [r for r in rows if r.get("dequant_ms") is not None]
    if deq:
        L.append("Large-M path (dequantize to fp16, then `cupy.matmul`), its two parts timed alone:\n")
        L.append("| K x N | M | dequantize ms (AWQ) | GB/s | natural, shifts ms | natural, prmt+lop3 ms | "
                 "matmul on it ms | cuBLAS baseline ms | total ms |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for r in deq:
            gbs = (r["K"] * r["N"] * 2.5 + 3 * r["K"] * r["N"] / 128) / (r["dequant_ms"] * 1e-3) / 1e9
            L.append(f"| {r['K']}x{r['N']} | {r['M']} | {r['dequant_ms']:.4f} | {gbs:.0f} | "
                     f"{_fmt(r.get('dequant_logical_ms'), 4)} | {_fmt(r.get('dequant_logical_lop3_ms'), 4)} | "
                     f"{r['cublas_on_dequant_ms']:.4f} | {r['cublas_ms']:.4f} | {r['awq_ms']:.4f} |")
        L.append("")
    if deq:
        big = [r for r in deq if r["M"] >= 4096]
        if big:
            L.append(
                "At M = 4096 the dequantize kernel runs at ~2.8 TB/s (about the copy rate) and costs "
                + ", ".join(f"{r['dequant_ms'] / r['cublas_ms'] * 100:.0f}%" for r in big)
                + " of the cuBLAS time; cuBLAS on the dequantized weights took "
                + ", ".join(f"{(r['cublas_on_dequant_ms'] / r['cublas_ms'] - 1) * 100:+.0f}%" for r in big)
                + " vs. the baseline on random fp16 data, and the two back to back cost "
                + ", ".join(f"{(r['awq_ms'] - r['dequant_ms'] - r['cublas_on_dequant_ms']) * 1e3:.0f}" for r in big)
                + " us more than their sum. cuBLAS itself moved by up to 7% between runs of the same shape "
                "(e.g. 28672x8192, M=4096: 2.50-2.68 ms), so results near 0.9x move with run-to-run noise "
                "(benchmarks/gemm/NOTES.md lists every run).\n")
    few = sorted([r for r in rows + doc.get("extra_rows", []) if r.get("awq_gemv_ms") and r.get("awq_skinny_ms")],
                 key=lambda r: (r["K"] * r["N"], r["K"], r["M"]))
    if few:
        L.append("## Few tokens: CUDA-core GEMV vs tensor-core skinny kernel (AWQ)\n")
        L.append("Both kernels timed on the same data in the same run, each with its own tuned configuration "
                 "(`x cuBLAS` = cuBLAS fp16 time / kernel time; `BW/copy` of the GEMV). M = 2 and 4 are extra rows, "
                 "AWQ only.\n")
        L.append("| K x N | M | cuBLAS ms | GEMV ms | x cuBLAS | skinny ms | x cuBLAS | GEMV / skinny | GEMV BW/copy | "
                 "GEMV config (vw, fl, pf, waves) |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        bw_of = doc["copy_bandwidth"]
        for r in few:
            g, k, c = r["awq_gemv_ms"], r["awq_skinny_ms"], r["cublas_ms"]
            gc = r.get("awq_gemv_config") or {}
            L.append(f"| {r['K']}x{r['N']} | {r['M']} | {c:.4f} | {g:.4f} | {c / g:.2f} | {k:.4f} | {c / k:.2f} | "
                     f"{g / k:.3f} | {r['bytes'] / (g * 1e-3) / bw_of:.2f} | "
                     f"{gc.get('vw')}, {gc.get('fl')}, {gc.get('pf')}, {gc.get('waves')} |")
        L.append("")
        one = [r for r in few if r["M"] == 1]
        more = [r for r in few if r["M"] > 1]
        if one:
            L.append(f"At M = 1 the GEMV takes {min(r['awq_gemv_ms'] / r['awq_skinny_ms'] for r in one):.2f}-"
                     f"{max(r['awq_gemv_ms'] / r['awq_skinny_ms'] for r in one):.2f}x the skinny kernel's time"
                     + (f"; at M = {', '.join(str(m) for m in sorted({r['M'] for r in more}))} it takes "
                        f"{min(r['awq_gemv_ms'] / r['awq_skinny_ms'] for r in more):.2f}-"
                        f"{max(r['awq_gemv_ms'] / r['awq_skinny_ms'] for r in more):.2f}x (its HFMA2 work grows with "
                        "every token, while the skinny kernel's 8-token mma covers 2-8 tokens at the cost of one)"
                        if more else "")
                     + ". So `method=\"auto\"` runs the GEMV for M = 1 only (`GEMV_AUTO_MAX_M`), the skinny kernel up "
                     "to M = 64. The GEMV accumulates (q - z) * x in fp16 over batches of 8 rows, then in fp32: its "
                     f"relative error here is {min(r['rel_err'] for r in one):.1e}-{max(r['rel_err'] for r in one):.1e} "
                     "(skinny kernel: ~2e-4; the tests' bound: 2e-3).\n")

    cfgs = [(r['K'], r['N'], r['M'], r.get('awq_config')) for r in rows if r.get('awq_config')]
    if cfgs:
        L.append("Skinny-kernel configuration chosen for AWQ (wc: 8*wc columns per thread, nt: 8*nt tokens per "
                 "block, pf: 0-2 register prefetch depth, 3-4 cp.async stages, chk: 1 = zero/scale applied once per "
                 "chunk of a group, 0 = per 32-k unit, warps: 8 per block, or 16 splitting the block's K range): " +
                 "; ".join(f"{k}x{n} M={m}: wc={c['wc']} nt={c['nt']} pf={c['pf']} chk={c.get('chk', 1)} "
                           f"warps={c.get('warps', 8)}"
                           + (f" x{c['sm_mult']} SMs" if c.get('sm_mult') else "") for k, n, m, c in cfgs) + ".\n")

    def ratios(rs, v, meth):
        """natural-order (or GPTQ) time / AWQ time of one kernel, per row."""
        out = []
        for r in rs:
            val = r.get(f"{v}_{meth}_over_awq")
            if val is None and r.get("method") == meth:
                val = r.get(f"{v}_over_awq")
            if val is not None:
                out.append(val)
        return out

    def stat(vals):
        return f"median **{_med(vals):.3f}x** (range {min(vals):.3f}-{max(vals):.3f})"

    small = [r for r in rows if r["M"] <= 64]
    gv = {v: ratios(small, v, "gemv") for v in ("logical", "logical_lop3", "gptq")}
    sk = {v: ratios(small, v, "skinny") for v in ("logical", "logical_lop3", "gptq")}
    dq = [r for r in rows if r.get("method") == "dequant"]
    L.append("## Why [0, 2, 4, 6, 1, 3, 5, 7], and what it buys here\n")
    L.append(
        "An fp16 with bits `0x6400 | v` is `1024 + v`, so `(w & 0x000F000F) | 0x64006400` (one `lop3`) turns nibbles 0 "
        "and 4 of a 32-bit word into a `half2`; shifting the word by 4, 8, 12 gives nibbles (1,5), (2,6), (3,7). "
        "Each step therefore pairs nibble i with nibble i+4. AWQ stores column `[0,2,4,6,1,3,5,7][i]` in nibble i "
        "precisely so that those pairs are adjacent columns (0,1), (2,3), (4,5), (6,7): a dequantizer that writes "
        "fp16 pairs of neighbouring columns (a `half2` `HFMA2` GEMV, or a dense fp16 row of W) gets them with one "
        "`lop3` per pair and no byte shuffles. With natural order the same pairs need the nibbles moved first "
        "(shifts and masks, or a byte permute per pair).\n")
    L.append(
        "Measured here on identical data (same logical weights packed both ways, each layout's kernel tuned on "
        "its own):\n")
    if gv["logical"]:
        L.append("- CUDA-core GEMV (M = 1; it builds `half2` pairs of adjacent columns, the case the interleave was "
                 f"made for), natural order decoded with shifts and masks: {stat(gv['logical'])} the AWQ GEMV's time; "
                 f"natural order with a byte permute (`prmt`) per pair + the same lop3: {stat(gv['logical_lop3'])}"
                 + (f"; GPTQ words (8 k of one column: two columns byte-permuted together, then lop3): "
                    f"{stat(gv['gptq'])}" if gv["gptq"] else "") + ".")
    if sk["logical"]:
        L.append(f"- Skinny tensor-core kernel (M = 1 and 16; k-pairs of one column), natural order decoded with shifts "
                 f"and masks: {stat(sk['logical'])} the AWQ kernel's time; natural order decoded with the same lop3 "
                 f"trick: {stat(sk['logical_lop3'])}.")
    if dq:
        L.append(f"- Dequantize + cuBLAS path (M >= {min(r['M'] for r in dq)}), natural order with shifts and masks: "
                 f"median **{_med([r.get('logical_over_awq') for r in dq]):.3f}x** the AWQ time; natural order with "
                 f"byte permutes + lop3: median **{_med([r.get('logical_lop3_over_awq') for r in dq]):.3f}x**.")
    L.append("")
    if gv["logical"] and sk["logical"]:
        g_l3, g_sh = _med(gv["logical_lop3"]), _med(gv["logical"])
        s_l3, s_sh = _med(sk["logical_lop3"]), _med(sk["logical"])
        gbw = [r["bw_frac"] for r in rows if r.get("method") == "gemv"]
        L.append(
            "Reading. The GEMV decodes each word into four `half2` pairs of adjacent columns, subtracts the zero "
            "pair (`hsub2`) and does one `HFMA2` per pair and token: per 8 weights AWQ order costs 3 shifts + 4 "
            "`lop3`, natural order 1 shift + 4 `prmt` + 4 `lop3` (two more instructions, ~13% more per word "
            f"with the hsub2/HFMA2), or a shift-and-mask decode. Measured, the natural-order GEMV takes {g_l3:.3f}x "
            f"the AWQ time with `prmt` + `lop3` and {g_sh:.3f}x with shifts and masks: at "
            + (f"{min(gbw):.2f}-{max(gbw):.2f} of the copy rate" if gbw else "its fraction of the copy rate")
            + " the GEMV is near, not at, the memory bound, so decode instructions still show."
            + (f" GPTQ words (packed along K) reach the same adjacent-column pairs with one `prmt` per two words "
               f"and 4 rows instead of one per pair, and run at {_med(gv['gptq']):.3f}x the AWQ time: the cost is "
               "the per-pair byte permute, which the interleave removes." if gv["gptq"] else "")
            + " The tensor-core kernel needs the "
            "opposite pairing: an `mma.m16n8k16` A-fragment register holds two *k* values of one output column, "
            "not two columns. So it byte-permutes two rows' words together (`prmt`, two per 16 values) and the four "
            "`lop3` steps then give k-pairs of one column each; which column a nibble holds is only a compile-time "
            f"table, and natural order through the same decoder runs at {s_l3:.3f}x the AWQ time (the shift-and-mask "
            f"decoder: {s_sh:.2f}x). The dequantize kernel of the large-M path builds adjacent-column pairs too, but "
            "it is memory-bound and the cuBLAS GEMM after it dominates.\n")
        L.append(
            "Answer: `[0,2,4,6,1,3,5,7]` exists so that a dequantizer that builds `half2` pairs of adjacent columns "
            "(FasterTransformer-style kernels, and the M = 1 GEMV here) gets each pair from one `lop3`, with no byte "
            f"shuffles. On this H100 that buys {(g_l3 - 1) * 100:.0f}% in the M = 1 GEMV (against natural order with "
            f"the cheapest decoder, `prmt` + `lop3`) and ~{abs(s_l3 - 1) * 100:.0f}% in the K-paired tensor-core "
            "kernel and the dequantize kernel; the lop3 / magic-number conversion itself (against shifts and masks) "
            f"is worth {(g_sh - 1) * 100:.0f}% (GEMV) and {(s_sh - 1) * 100:.0f}% (tensor-core kernel). A converter "
            "may repack between orders freely; a kernel that pairs columns on natural-order words pays a few "
            "percent at decode time.\n")
    path.write_text("\n".join(L))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=str(HERE))
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="two small shapes, M in {1, 16}")
    ap.add_argument("--extra-ms", default="2,4",
                    help="more token counts, AWQ only (GEMV vs skinny crossover), comma-separated; '' for none")
    args = ap.parse_args()

    from awqfmt.gpu import gpu_available
    from awqfmt.gpu.bench import (DEFAULT_MS, DEFAULT_SHAPES, device_info, measure_copy_bandwidth, now_utc,
                                  render_table, run_bench, summarize)

    if not gpu_available():
        print("no GPU / CuPy here: nothing to benchmark", file=sys.stderr)
        return 2
    shapes, ms = DEFAULT_SHAPES, DEFAULT_MS
    if args.quick:
        shapes, ms = [(4096, 4096)], [1, 16]
    extra_ms = [int(m) for m in args.extra_ms.split(",") if m.strip()]
    info = device_info()
    bw = measure_copy_bandwidth()
    print(f"{info['name']}: copy {bw / 1e12:.2f} TB/s", flush=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    extra: list[dict] = []
    doc: dict = {}
    for shape in shapes:  # results.json is rewritten after each shape: a run cut short keeps what it measured
        rows += run_bench([shape], ms, group_size=128, reps=args.reps, copy_bandwidth=bw,
                          progress=lambda m: print(m, flush=True))
        if extra_ms:
            extra += run_bench([shape], extra_ms, group_size=128, reps=args.reps, copy_bandwidth=bw, variants=("awq",),
                               progress=lambda m: print(m, flush=True))
        doc = {"date": now_utc(), "device": info, "copy_bandwidth": bw, "group_size": 128, "reps": args.reps,
               "timing": "median of samples of 10 launches (CUDA-graph replays where the library can capture), "
                         "CUDA events, each sample queued behind a GPU spin kernel (no host launch latency), L2 "
                         "not flushed, weights rotated through copies totalling >= 3x L2", "summary": summarize(rows), "rows": rows,
               "extra_rows": extra}
        (out / "results.json").write_text(json.dumps(doc, indent=1, default=str))
    write_markdown(out / "RESULTS.md", doc)
    render_table(rows, copy_bw=bw)
    print(json.dumps(doc["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
