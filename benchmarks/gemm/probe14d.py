"""Run-14g probe (2026-11-25 session 11): tensor-core issue rates on one H100 for the M = 16 kernel's shape of
work (run14/mma_rate.cu, built here with nvcc -arch=sm_90a): mma.sync chains as the skinny kernel issues them
(8 accumulators x 2 dependent k16 steps per unit), with and without its decode in front, at 4-16 warps per SM,
against wgmma m64n16k16 (one = 8 m16n8k16 of work). Prints ns and cycles (at the device's reported clock) per
m16n8k16-equivalent per scheduler. Writes $OUT/probe14d.json when OUT is set.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent / "run14"


def main() -> None:
    import cupy as cp

    cubin = Path("/tmp/mma_rate.cubin")
    subprocess.run(["nvcc", "-arch=sm_90a", "-std=c++17", "-cubin", "-o", str(cubin), str(HERE / "mma_rate.cu")],
                   check=True)
    mod = cp.RawModule(path=str(cubin))
    dev = cp.cuda.Device()
    sms = int(dev.attributes["MultiProcessorCount"])
    clock_ghz = int(dev.attributes["ClockRate"]) / 1e6
    out = cp.zeros(1024, cp.float32)
    rows = []

    def timed(fn, reps=5):
        fn()
        cp.cuda.Device().synchronize()
        ts = []
        for _ in range(reps):
            a, b = cp.cuda.Event(), cp.cuda.Event()
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(cp.cuda.get_elapsed_time(a, b) * 1e-3)
        return statistics.median(ts)

    cases = [("mma_chain<8, 2, 0>", 8 * 2, 1), ("mma_chain<8, 2, 1>", 8 * 2, 1), ("mma_chain<16, 2, 0>", 16 * 2, 1),
             ("mma_chain<4, 4, 0>", 4 * 4, 1)]
    for name, per_round, _ in cases:
        k = mod.get_function("_Z9mma_chainILi" + name[10:].replace(">", "").replace(", ", "ELi") + "EEvPfij")
        for warps_per_sm in (4, 8, 16):
            rounds = 4000
            blocks = sms * warps_per_sm // 4
            t = timed(lambda: k((blocks,), (128,), (out, cp.int32(rounds), cp.uint32(7))))
            mmas_per_smsp = blocks * 4 * rounds * per_round / (sms * 4)
            ns = t * 1e9 / mmas_per_smsp
            rows.append({"kernel": name, "warps_per_sm": warps_per_sm, "s": t, "ns_per_mma": ns,
                         "cycles_per_mma": ns * clock_ghz})
            print(f"{name:22s} {warps_per_sm:2d} warps/SM  {t * 1e3:7.3f} ms  {ns:6.2f} ns = {ns * clock_ghz:5.2f} "
                  f"cycles per m16n8k16 per scheduler", flush=True)
    for nw, const_a in ((4, 0), (8, 0), (4, 1)):
        k = mod.get_function(f"_Z10wgmma_rateILi{nw}ELi{const_a}EEvPfij")
        for groups_per_sm in (1, 2, 4):
            rounds = 4000
            blocks = sms * groups_per_sm
            t = timed(lambda: k((blocks,), (128,), (out, cp.int32(rounds), cp.uint32(7))))
            equiv_per_smsp = blocks * rounds * nw * 8 / (sms * 4)
            ns = t * 1e9 / equiv_per_smsp
            name = f"wgmma_rate<{nw}, {const_a}>"
            rows.append({"kernel": name, "warpgroups_per_sm": groups_per_sm, "s": t, "ns_per_mma_equiv": ns,
                         "cycles_per_mma_equiv": ns * clock_ghz})
            print(f"{name:22s} {groups_per_sm:2d} wg/SM     {t * 1e3:7.3f} ms  {ns:6.2f} ns = {ns * clock_ghz:5.2f} "
                  f"cycles per m16n8k16-equivalent per scheduler", flush=True)
    print(f"clock (device attribute) {clock_ghz:.3f} GHz, {sms} SMs")
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "probe14d.json"), "w") as f:
            json.dump({"clock_ghz": clock_ghz, "sms": sms, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
