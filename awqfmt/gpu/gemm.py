"""Launch code for the W4A16 kernels in the top-level `kernels/` directory (CuPy RawModule / NVRTC).

    y[M, N] (fp16) = x[M, K] (fp16) @ W[K, N],   W[k, n] = (q[k, n] - z[g, n]) * s[g, n]

Three methods:
- "gemv": for 1-4 tokens, a CUDA-core GEMV (kernels/w4a16_gemv.cu): each thread streams its words, decodes
  them into fp16 pairs of adjacent columns (the pairing the AWQ interleave was made for), multiplies with
  HFMA2, applies zero point and scale per batch of rows, and the K split is reduced inside the same launch.
- "skinny": one launch of a weight-streaming tensor-core kernel (kernels/w4a16_gemm.cu) that reads the packed
  words directly (AWQ-interleaved words with the lop3 / 0x64006400 conversion, no reverse-order step), splits K
  across blocks and finishes the split-K reduction inside the same launch. For small M (decode).
- "dequant": dequantize to a dense fp16 W (kernels/w4a16_dequant.cu), then cuBLAS (`cupy.matmul`). For large M,
  and for GPTQ act-order (non-trivial g_idx) at any M.

Layouts: "awq" (qweight [K, N/8], nibble i = column [0,2,4,6,1,3,5,7][i]), "logical" (same shapes, natural
order; decoded with shifts and masks by default, `decode="lop3"` for the lop3 decoder), "gptq" (qweight [K/8, N]
packed along K, qzeros store z - 1) and "gptq-v2" (qzeros store z). qzeros [n_g, N/8], scales [n_g, N] (fp16,
or bf16 as raw uint16 bits with scale_dtype="BF16").

CuPy is imported lazily: importing this module works without it. Every launch is checked (launch errors
raise at once; `check=True` or AWQFMT_GPU_CHECK=1 also synchronizes and raises asynchronous faults).
The split-K workspace is shared per device unless a call passes its own (`Workspace`): streams that run GEMMs
at the same time need one each.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .launch import launch_pdl, pdl_available

# M up to this uses the skinny kernel, above it dequantize + cuBLAS (measured crossover, see
# benchmarks/gemm/RESULTS.md).
SKINNY_MAX_M = 64
# The GEMV kernel takes 1 to GEMV_MAX_M tokens; method="auto" uses it up to GEMV_AUTO_MAX_M tokens (measured,
# see benchmarks/gemm/RESULTS.md), unless tuning (TUNED_METHOD) chose otherwise for a shape.
GEMV_MAX_M = 4
GEMV_AUTO_MAX_M = 1

# layout name -> (spec name, default decode)
_LAYOUTS = {"awq": "lop3", "logical": "shift", "gptq": "shift", "gptq-v2": "shift"}
# (layout, decode) -> kernel LAYOUT template code (kernels/w4a16_common.cuh)
_CODES = {("awq", "lop3"): 0, ("logical", "lop3"): 1, ("logical", "shift"): 2, ("gptq", "shift"): 3,
          ("gptq-v2", "shift"): 3}

_GEMM_SRC = "w4a16_gemm.cu"
_GEMV_SRC = "w4a16_gemv.cu"
_DEQUANT_SRC = "w4a16_dequant.cu"


class GemmError(RuntimeError):
    """Bad arguments for a kernel, a failed compile or launch, or the GPU/CuPy is not usable."""


class GemmUnsupported(GemmError):
    """The kernels do not cover this module (layout, bit width, group size, act-order): a gap, not a failure.
    Callers such as `awqfmt verify` fall back to another backend on this and only on this."""


def supports(layout_name: str, bits: int) -> bool:
    """Whether some kernel exists for this layout and width (finer limits raise GemmUnsupported at call time)."""
    return layout_name in _LAYOUTS and bits == 4


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device. Never raises."""
    try:
        import cupy  # noqa: F401

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:
        return False


def _cupy():
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install
        raise GemmError(f"CuPy is not usable here ({exc}); install awqfmt[gpu] on a machine with an NVIDIA GPU") from exc
    return cupy


def kernels_dir() -> Path:
    """The directory holding the .cu/.cuh sources (awqfmt/kernels in a wheel, ../kernels in a checkout)."""
    pkg = Path(__file__).resolve().parent.parent
    for cand in (pkg / "kernels", pkg.parent / "kernels"):
        if (cand / "w4a16_common.cuh").is_file():
            return cand
    raise GemmError(f"kernel sources not found (looked in {pkg / 'kernels'} and {pkg.parent / 'kernels'})")


_sources: dict[str, str] = {}
_kernels: dict[tuple, Any] = {}


def _source(fname: str) -> str:
    """Source text with the local #include inlined (NVRTC has no include path by default, and CuPy's
    compile cache keys on the source text, so an edited header must change the text)."""
    if fname not in _sources:
        kdir = kernels_dir()
        text = (kdir / fname).read_text()
        common = (kdir / "w4a16_common.cuh").read_text()
        _sources[fname] = text.replace('#include "w4a16_common.cuh"', common)
    return _sources[fname]


def _kernel(fname: str, name: str):
    cp = _cupy()
    # AWQFMT_L2_PREFETCH=0|64|128|256 overrides the weight loads' L2 prefetch-size hint (default 128)
    hint = os.environ.get("AWQFMT_L2_PREFETCH", "")
    options = ("-std=c++17",) + ((f"-DAWQFMT_L2_PREFETCH={int(hint)}",) if hint in ("0", "64", "128", "256") else ())
    key = (cp.cuda.Device().id, fname, name, options)
    k = _kernels.get(key)
    if k is None:
        try:
            mod = cp.RawModule(code=_source(fname), options=options, name_expressions=[name])
            k = mod.get_function(name)
        except Exception as exc:
            raise GemmError(f"compiling {name} from {fname} failed: {exc}") from exc
        _kernels[key] = k
    return k


# Device and kernel attributes are read once, not per launch (`Device.attributes` queries every attribute of
# the device): the small-M launches from Python cost tens of microseconds of CPU each (run 12h/i).
_sm_counts: dict[int, int] = {}
_occupancy: dict[tuple, tuple[Any, int]] = {}  # (id(kernel), threads, smem) -> (kernel, blocks per SM)


def _sm_count() -> int:
    cp = _cupy()
    dev = cp.cuda.Device().id
    n = _sm_counts.get(dev)
    if n is None:
        n = _sm_counts[dev] = int(cp.cuda.Device(dev).attributes["MultiProcessorCount"])
    return n


def _blocks_per_sm(kern, threads: int = 256, smem: int = 0) -> int:
    key = (id(kern), threads, smem)
    hit = _occupancy.get(key)
    if hit is not None and hit[0] is kern:  # the kernel object itself: an id may be reused once one is freed
        return hit[1]
    try:
        regs = int(kern.num_regs)
    except Exception:
        regs = 128
    try:
        smem += int(kern.shared_size_bytes)
    except Exception:
        pass
    per_warp = -(-regs * 32 // 256) * 256  # allocation granularity 256 registers per warp
    by_regs = 65536 // (per_warp * (threads // 32))
    by_smem = (228 * 1024) // (smem + 1024)
    n = max(1, min(8, by_regs, by_smem))
    _occupancy[key] = (kern, n)
    return n


class Workspace:
    """The zeroed split-K workspaces (fp32 sums, 64-bit fixed-point words) and tile counters the GEMV and skinny
    kernels reduce through (each launch leaves them zeroed again). Launches that share one must not run at the
    same time: gemm_packed uses one per device unless given its own, so give each stream that runs GEMMs
    concurrently with another its own `Workspace()` (README "Library"). Grows on demand, on the device current
    when it first grows."""

    def __init__(self):
        self.ws = None
        self.ws64 = None
        self.counters = None
        self.device = None

    def arrays(self, n_out: int, n_counters: int):
        """(fp32 [n_out], uint64 [n_out], uint32 counters [n_counters]), at least that large, all zero."""
        cp = _cupy()
        dev = cp.cuda.Device().id
        if self.device is not None and self.device != dev:
            raise GemmError(f"this Workspace lives on GPU {self.device}; the current device is GPU {dev}")
        self.device = dev
        if self.ws is None or self.ws.size < n_out:
            self.ws = cp.zeros(max(n_out, 1 << 20), dtype=cp.float32)
            self.ws64 = cp.zeros(self.ws.size, dtype=cp.uint64)
        if self.counters is None or self.counters.size < n_counters:
            self.counters = cp.zeros(max(n_counters, 4096), dtype=cp.uint32)
        return self.ws, self.ws64, self.counters


_workspaces: dict[int, Workspace] = {}


def _workspace(n_out: int, n_counters: int, own: Workspace | None = None):
    """The workspace arrays for a launch (Workspace.arrays): `own`, or the current device's shared one. A PDL
    launch touches them only after waiting for the kernel before it."""
    if own is not None:
        return own.arrays(n_out, n_counters)
    dev = _cupy().cuda.Device().id
    shared = _workspaces.get(dev)
    if shared is None:
        shared = _workspaces[dev] = Workspace()
    return shared.arrays(n_out, n_counters)


_scratch: dict[int, Any] = {}


def _dequant_buffer(n: int):
    cp = _cupy()
    dev = cp.cuda.Device().id
    buf = _scratch.get(dev)
    if buf is None or buf.size < n:
        buf = cp.empty(n, dtype=cp.float16)
        _scratch[dev] = buf
    return buf[:n]


# ---- argument handling ---------------------------------------------------------------------------------

def _dev(a, dtype, name: str, align: int = 16):
    cp = _cupy()
    arr = cp.asarray(a)
    if dtype is not None and arr.dtype != dtype:
        if arr.dtype.itemsize == np.dtype(dtype).itemsize and arr.dtype.kind in "iu" and np.dtype(dtype).kind in "iu":
            arr = arr.view(dtype)
        else:
            raise GemmError(f"{name} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if not arr.flags.c_contiguous or arr.data.ptr % align:
        arr = cp.array(arr, order="C", copy=True)
    return arr


def _scales_dev(s, scale_dtype: str):
    cp = _cupy()
    if scale_dtype == "BF16":
        arr = cp.asarray(s)
        if arr.dtype.itemsize != 2:
            raise GemmError(f"BF16 scales must be 2-byte raw bits (uint16), got {arr.dtype}")
        return _dev(arr.view(cp.uint16), cp.uint16, "scales"), True
    if scale_dtype == "F16":
        return _dev(s, cp.float16, "scales"), False
    if scale_dtype == "F32":
        arr = cp.asarray(s, dtype=cp.float32)
        if arr.size and float(cp.abs(arr).max()) > 65504.0:
            raise GemmError("F32 scales exceed the fp16 range")
        return _dev(arr.astype(cp.float16), cp.float16, "scales"), False
    raise GemmError(f"unsupported scale_dtype {scale_dtype!r} (F16, BF16 or F32)")


def _resolve(layout_name: str, decode: str | None) -> tuple[str, int]:
    if layout_name not in _LAYOUTS:
        raise GemmUnsupported(f"no GPU kernel for layout {layout_name!r} (have: {', '.join(_LAYOUTS)})")
    decode = decode or _LAYOUTS[layout_name]
    code = _CODES.get((layout_name, decode))
    if code is None:
        raise GemmUnsupported(f"layout {layout_name!r} has no {decode!r} decoder")
    return layout_name, code


def _default_zero_offset(layout_name: str) -> int:
    try:
        from ..spec import get_spec

        return int(get_spec(layout_name).zero_offset)
    except Exception:
        return -1 if layout_name == "gptq" else 0


class _Prepared:
    """Device tensors and dimensions of one packed module."""

    pdl_safe = False  # prepare() sets it: no kernel can still be writing these tensors

    def __init__(self, layout_name: str, tensors: Mapping[str, Any], *, bits: int, group_size: int,
                 scale_dtype: str, zero_offset: int | None, decode: str | None):
        cp = _cupy()
        if bits != 4:
            raise GemmUnsupported(f"the GPU kernels handle 4-bit weights only (got bits={bits})")
        self.layout, self.code = _resolve(layout_name, decode)
        self.gptq = self.code == 3
        if "qweight" not in tensors or "scales" not in tensors:
            raise GemmError("tensors must hold at least 'qweight' and 'scales'")
        self.qw = _dev(tensors["qweight"], cp.int32, "qweight")
        self.sc, self.bf16 = _scales_dev(tensors["scales"], scale_dtype)
        if self.qw.ndim != 2 or self.sc.ndim != 2:
            raise GemmError("qweight and scales must be 2-D")
        if self.gptq:
            self.K, self.N = self.qw.shape[0] * 8, self.qw.shape[1]
        else:
            self.K, self.N = self.qw.shape[0], self.qw.shape[1] * 8
        K, N = self.K, self.N
        if N % 8 or self.sc.shape[1] != N:
            raise GemmUnsupported(f"scales have {self.sc.shape[1]} columns, qweight implies N={N} (N must be a multiple of 8)")
        G = K if group_size in (-1, 0, None) else int(group_size)
        if G <= 0 or K % G:
            raise GemmUnsupported(f"group_size {group_size} does not divide K={K}")
        self.G = G
        self.n_g = K // G
        if self.sc.shape[0] != self.n_g:
            raise GemmError(f"scales have {self.sc.shape[0]} rows, expected K/G = {self.n_g}")
        off = _default_zero_offset(layout_name) if zero_offset is None else int(zero_offset)
        self.zoff = -off  # the kernel adds this to the stored field
        if self.zoff not in (0, 1):
            raise GemmError(f"zero_offset {off} not supported (0: stored z, -1: stored z - 1)")
        if tensors.get("qzeros") is not None:
            self.qz = _dev(tensors["qzeros"], cp.int32, "qzeros")
            if tuple(self.qz.shape) != (self.n_g, N // 8):
                raise GemmError(f"qzeros has shape {tuple(self.qz.shape)}, expected {(self.n_g, N // 8)}")
        else:  # symmetric, zeros not stored: z = 8
            field = (8 + off) & 0xF
            word = np.array(field * 0x11111111, dtype=np.uint32).view(np.int32)
            self.qz = cp.full((self.n_g, N // 8), int(word), dtype=cp.int32)
        self.g_idx = None
        gi = tensors.get("g_idx")
        if gi is not None:
            gdev = _dev(gi, None, "g_idx").astype(cp.int32)
            if gdev.shape != (K,):
                raise GemmError(f"g_idx has shape {tuple(gdev.shape)}, expected ({K},)")
            trivial = cp.arange(K, dtype=cp.int32) // G
            if not bool((gdev == trivial).all()):
                if not self.gptq:
                    raise GemmUnsupported(f"layout {layout_name} has no g_idx (act-order)")
                if int(gdev.min()) < 0 or int(gdev.max()) >= self.n_g:
                    raise GemmError("g_idx values out of range")
                self.g_idx = cp.ascontiguousarray(gdev)

    @property
    def skinny_ok(self) -> bool:
        return self.g_idx is None and (self.G % 32 == 0 or self.G == self.K)

    @property
    def gemv_ok(self) -> bool:
        """The GEMV kernel's batches of <= 8 rows must not cross a group: the same rule as the skinny kernel."""
        return self.skinny_ok


def pick_method(M: int, prepared_or_none=None) -> str:
    """The method gemm_packed(method="auto") runs for M tokens: "gemv" up to GEMV_AUTO_MAX_M tokens, "skinny"
    up to SKINNY_MAX_M, else "dequant"; act-order or odd group sizes always "dequant"; a shape tuned by
    awqfmt.gpu.bench (TUNED_METHOD) gets the method measured fastest for it."""
    p = prepared_or_none
    if p is not None and not p.skinny_ok:
        return "dequant"
    if p is not None and M <= GEMV_MAX_M:
        tuned = TUNED_METHOD.get(gemv_key(p, M))
        if tuned:
            return tuned
    if M <= GEMV_AUTO_MAX_M:
        return "gemv"
    return "skinny" if M <= SKINNY_MAX_M else "dequant"


# Skinny-kernel configurations found best for a (layout code, K, N, group, M bucket), filled by tune()
# (awqfmt.gpu.bench) or by hand; consulted when gemm_packed gets no config.
TUNED: dict[tuple, dict] = {}
# GEMV configurations and the faster of gemv / skinny per (layout code, K, N, group, bf16, M), M <= GEMV_MAX_M,
# filled by awqfmt.gpu.bench.tune_small.
TUNED_GEMV: dict[tuple, dict] = {}
TUNED_METHOD: dict[tuple, str] = {}


def gemv_key(p: "_Prepared", M: int) -> tuple:
    return (p.code, p.K, p.N, p.G, int(p.bf16), int(M))


def gemv_candidate_configs(M: int) -> list[dict]:
    """GEMV configurations worth timing: vw words (8 * vw columns) per thread and row, fl rows per fp16
    batch, pf 0/1 (next batch loaded before the current one is computed), waves of resident blocks, l2pf 1: the
    block's whole slice requested into L2 before the PDL wait (faster at 4096x4096 only: see w4a16_gemv.cu)."""
    return [{"vw": 2, "fl": 8, "pf": 1, "waves": 1}, {"vw": 2, "fl": 8, "pf": 0, "waves": 1},
            {"vw": 2, "fl": 8, "pf": 1, "waves": 1, "l2pf": 1}, {"vw": 1, "fl": 8, "pf": 1, "waves": 1, "l2pf": 1},
            {"vw": 2, "fl": 8, "pf": 0, "waves": 1, "l2pf": 1},
            {"vw": 2, "fl": 8, "pf": 1, "waves": 4},
            {"vw": 1, "fl": 8, "pf": 1, "waves": 1}, {"vw": 1, "fl": 8, "pf": 0, "waves": 2},
            {"vw": 2, "fl": 4, "pf": 1, "waves": 2}, {"vw": 2, "fl": 4, "pf": 1, "waves": 1},
            {"vw": 4, "fl": 4, "pf": 0, "waves": 1}]


def m_bucket(M: int) -> int:
    return 8 if M <= 8 else 16 if M <= 16 else 32 if M <= 32 else 64


def tuning_key(p: "_Prepared", M: int) -> tuple:
    return (p.code, p.K, p.N, p.G, int(p.bf16), m_bucket(M))


def candidate_configs(M: int) -> list[dict]:
    """Skinny-kernel configurations worth timing for M tokens: tile width wc, token tiles nt, pipeline pf,
    chk (1: zero/scale applied once per chunk of a group; 0: per unit, fewer registers), and the blocks to
    aim for as a multiple of the SM count ("splits" fixes the K splits instead). pf = 2 on AWQ-like words with
    K % 32 == 0 keeps the weights two units ahead and the rest one (the split prefetch of run 10). warps = 16:
    one 512-thread block per SM whose halves split the block's K range (run 11: no K split across blocks, and
    its workspace round trip, where 64-column tiles about fill the GPU: 8192² and 28672x8192, M = 16; with
    nt = 1 at 4096², M = 16: two blocks per column tile, one per 8 tokens, 3-4% faster in run 12d)."""
    if M <= 8:
        return [{"wc": 2, "nt": 1, "pf": 0, "chk": 1}, {"wc": 1, "nt": 1, "pf": 2, "chk": 0},
                {"wc": 2, "nt": 1, "pf": 4, "chk": 1},
                {"wc": 2, "nt": 1, "pf": 3, "chk": 1}, {"wc": 1, "nt": 1, "pf": 3, "chk": 1},
                {"wc": 2, "nt": 1, "pf": 0, "chk": 0}, {"wc": 2, "nt": 1, "pf": 1, "chk": 0}]
    if M <= 16:
        return [{"wc": 1, "nt": 2, "pf": 1, "chk": 0}, {"wc": 1, "nt": 2, "pf": 2, "chk": 0},
                {"wc": 1, "nt": 2, "pf": 1, "chk": 0, "warps": 16}, {"wc": 1, "nt": 2, "pf": 2, "chk": 0, "warps": 16},
                {"wc": 1, "nt": 1, "pf": 1, "chk": 0, "warps": 16},
                {"wc": 2, "nt": 2, "pf": 1, "chk": 0, "sm_mult": 1},
                {"wc": 1, "nt": 2, "pf": 3, "chk": 0}, {"wc": 1, "nt": 2, "pf": 3, "chk": 1},
                {"wc": 2, "nt": 2, "pf": 3, "chk": 1, "sm_mult": 1}, {"wc": 1, "nt": 2, "pf": 0, "chk": 1}]
    return [{"wc": 1, "nt": 4, "pf": 1, "chk": 0}, {"wc": 1, "nt": 4, "pf": 3, "chk": 1},
            {"wc": 1, "nt": 4, "pf": 3, "chk": 0}, {"wc": 2, "nt": 2, "pf": 1, "chk": 0}]


def _default_config(M: int) -> dict:
    if M <= 8:
        return {"wc": 2, "nt": 1, "pf": 0, "chk": 1}
    if M <= 16:
        return {"wc": 1, "nt": 2, "pf": 1, "chk": 0}
    return {"wc": 1, "nt": 4, "pf": 1, "chk": 0}


@functools.lru_cache(maxsize=256)
def group_magic(d: int, n: int) -> tuple[int, int]:
    """(gm, gmask) such that hi32(i * gm) + (i & gmask) == i // d for every 0 <= i < n: the kernels' `group_of`
    (w4a16_common.cuh) maps a row or unit index to its quantization group without an integer division."""
    if n <= d:
        return 0, 0  # one group
    if d == 1:
        return 0, 0xFFFFFFFF
    gm = (1 << 32) // d + 1
    i = np.arange(n, dtype=np.uint64)
    if n >= 1 << 32 or not np.array_equal((i * np.uint64(gm)) >> np.uint64(32), i // np.uint64(d)):
        raise GemmUnsupported(f"group index of {n} rows/units with divisor {d} does not fit the kernels' 32-bit form")
    return gm, 0


def _check(check: bool) -> None:
    if check or os.environ.get("AWQFMT_GPU_CHECK"):
        cp = _cupy()
        try:
            cp.cuda.get_current_stream().synchronize()
        except Exception as exc:
            raise GemmError(f"kernel failed: {exc}") from exc


def _launch(kern, grid, block, args, what: str, shared_mem: int = 0, pdl: bool = False):
    """Launch on the current stream; pdl: with programmatic stream serialization (see awqfmt/gpu/launch.py)."""
    try:
        if pdl:
            launch_pdl(kern, grid, block, args, shared_mem)
        else:
            kern(grid, block, args, shared_mem=shared_mem)
    except Exception as exc:
        raise GemmError(f"launching {what} failed: {exc}") from exc


def _stage_bytes(gptq: bool, wc: int, nt: int) -> int:
    """Bytes of one cp.async stage of one warp (kernels/w4a16_gemm.cu: OX + 512 * NT)."""
    oz = 1024 * wc
    os_ = oz + (256 if gptq else 128) * wc
    return os_ + 512 * wc + 512 * nt


SMEM_DEFAULT_LIMIT = 48 * 1024  # static + dynamic shared memory a block gets without opting in


def _allow_dynamic_smem(kern, dyn: int, name: str) -> None:
    """Opt `kern` into `dyn` bytes of dynamic shared memory where its static plus dynamic total passes the 48 KiB
    a block gets by default (the limit counts both, not the dynamic part alone)."""
    if not dyn:
        return
    try:
        static = int(kern.shared_size_bytes)
    except Exception:
        static = 0
    if static + dyn <= SMEM_DEFAULT_LIMIT:
        return
    try:
        if int(kern.max_dynamic_shared_size_bytes) < dyn:
            kern.max_dynamic_shared_size_bytes = dyn
    except Exception as exc:
        raise GemmError(f"cannot give {name} {dyn} bytes of shared memory: {exc}") from exc


def _run_skinny(p: _Prepared, x, y, M: int, config: dict | None, pdl: bool = False,
                workspace: Workspace | None = None) -> dict:
    cfg = dict(_default_config(M))
    if config is None:
        config = TUNED.get(tuning_key(p, M))
    if config:
        cfg.update(config)
    if cfg.get("sm_mult") and not cfg.get("target_blocks"):
        cfg["target_blocks"] = int(cfg["sm_mult"] * _sm_count())
    wc, nt, pf, chk = int(cfg["wc"]), int(cfg["nt"]), int(cfg["pf"]), int(cfg.get("chk", 1))
    warps = int(cfg.get("warps", 8))
    if wc not in (1, 2, 4) or nt not in (1, 2, 4) or pf not in (0, 1, 2, 3, 4) or chk not in (0, 1) \
            or warps not in (8, 16):
        raise GemmError(f"bad skinny config {cfg} (wc, nt in 1/2/4, pf in 0..4, chk 0/1, warps 8/16)")
    while wc > 1 and wc * nt > 4:
        wc //= 2
    K, N = p.K, p.N
    if not p.gptq:
        while wc > 1 and (N // 8) % wc:  # (the prepared arrays are 16-byte aligned: _dev)
            wc //= 2
    if pf >= 3 and K % 8:
        pf = 1  # the cp.async pipeline loads x in 16-byte pieces
    if pf >= 3:
        while pf >= 3 and 8 * pf * _stage_bytes(p.gptq, wc, nt) + 8192 * wc * nt + 1024 > 227 * 1024:
            pf -= 1  # the stages must fit in shared memory next to the reduction buffer
        if pf < 3:
            pf = 1
    if wc * nt > 2 or pf > 2:
        warps = 8  # 16-warp blocks: register loads and at most 2 tiles x tokens (the kernel's launch bounds)
    threads = 32 * warps
    kf = int(K % 32 == 0)  # every unit lies inside K: the unit loop's loads drop their bounds tests
    name = f"w4a16_skinny<{p.code},{wc},{nt},{int(p.bf16)},{p.zoff},{pf},{chk},{kf},{warps}>"
    kern = _kernel(_GEMM_SRC, name)
    dyn = 8 * pf * _stage_bytes(p.gptq, wc, nt) if pf >= 3 else 0
    _allow_dynamic_smem(kern, dyn, name)
    n_units = -(-K // 32)
    col_tiles = -(-N // (64 * wc))
    tok_tiles = -(-M // (8 * nt))
    target = cfg.get("target_blocks") or _sm_count() * _blocks_per_sm(kern, threads=threads, smem=dyn)
    # chunks of CH consecutive units share one zero/scale application; they must not cross a group
    upg = p.G // 32 if p.G % 32 == 0 else 0
    ch_log = 0 if not chk else 2 if (p.G == K or upg % 4 == 0) else 1 if upg % 2 == 0 else 0
    CH = 1 << ch_log
    max_splits = -(-n_units // warps)  # at least one unit per warp
    if cfg.get("splits"):
        splits = max(1, min(int(cfg["splits"]), max_splits))
    else:
        splits = max(1, min(int(round(target / (col_tiles * tok_tiles))), max_splits))
    ups = -(-(-(-n_units // splits)) // CH) * CH
    splits = -(-n_units // ups)
    if tok_tiles > 65535 or splits > 65535:
        raise GemmError(f"M={M} too large for the skinny kernel")
    ws, ws64, ct = _workspace(M * N, col_tiles * tok_tiles, workspace)
    gm, gmask = group_magic(upg or n_units, n_units)  # units per group (one group: upg = 0 or n_units)
    args = (x, p.qw, p.qz, p.sc, y, ws, ws64, ct, np.int32(M), np.int32(K), np.int32(N), np.uint32(gm), np.uint32(gmask),
            np.int32(ups), np.int32(ch_log))
    grid = (col_tiles, splits, tok_tiles)
    pdl = pdl and bool(int(cfg.get("pdl", 1)))
    _launch(kern, grid, (threads,), args, name, shared_mem=dyn, pdl=pdl)
    return {"kernel": name, "grid": grid, "threads": threads, "units_per_split": ups, "chunk_units": CH,
            "shared_mem": dyn, "pdl": pdl}


def _l2pf(p: _Prepared, cfg: dict) -> int:
    """1 when the GEMV config asks ("l2pf") for the block's slice to be requested into L2 before the kernel waits
    for the one before it (run 15) and the bulk prefetch's 16-byte rule holds: N % 32 == 0 makes every row piece a
    multiple of 16 bytes (the prepared arrays are 16-byte aligned: _dev); else 0 (the kernel without it)."""
    return int(bool(int(cfg.get("l2pf", 0))) and p.N % 32 == 0)


def _run_gemv(p: _Prepared, x, y, M: int, config: dict | None, pdl: bool = False,
              workspace: Workspace | None = None) -> dict:
    cfg = {"vw": 2, "fl": 8, "pf": 1, "waves": 1}
    if config is None:
        config = TUNED_GEMV.get(gemv_key(p, M))
    if config:
        cfg.update(config)
    vw, fl, pf = int(cfg["vw"]), int(cfg["fl"]), int(cfg["pf"])
    if vw not in (1, 2, 4) or fl not in (2, 4, 8) or pf not in (0, 1) or not 1 <= M <= GEMV_MAX_M:
        raise GemmError(f"bad gemv config {cfg} or M={M} (vw 1/2/4, fl 2/4/8, pf 0/1, M 1..{GEMV_MAX_M})")
    if p.gptq:
        fl = 8  # a GPTQ batch is one packed word row
    K, N = p.K, p.N
    # a thread's vw words are loaded as one vector and are all inside N or all outside
    while vw > 1 and (N // 8) % vw:  # (the prepared arrays are 16-byte aligned: _dev)
        vw //= 2
    kf = int(K % 8 == 0)  # every batch lies inside K: the loads drop their bounds tests
    name = f"w4a16_gemv<{p.code},{int(p.bf16)},{p.zoff},{M},{vw},{fl},{pf},{kf}>"
    kern = _kernel(_GEMV_SRC, name)
    col_tiles = -(-N // 256)
    rt = 8 * vw  # row-threads per block
    rpt = int(cfg.get("rpt") or 0)
    if rpt <= 0:
        target = cfg.get("target_blocks") or float(cfg.get("waves", 1)) * _sm_count() * _blocks_per_sm(kern)
        splits = max(1, int(round(target / col_tiles)))
        rpt = -(-K // (splits * rt))
    rpt = -(-rpt // fl) * fl  # whole batches: every batch starts at a multiple of fl, inside one group
    splits = -(-K // (rt * rpt))
    if splits > 65535:
        raise GemmError(f"gemv: {splits} K splits is too many (rpt={rpt})")
    ws, ws64, ct = _workspace(M * N, col_tiles, workspace)
    gm, gmask = group_magic(p.G, K)  # rows per group
    l2pf = _l2pf(p, cfg)
    args = (x, p.qw, p.qz, p.sc, y, ws, ws64, ct, np.int32(M), np.int32(K), np.int32(N), np.uint32(gm), np.uint32(gmask),
            np.int32(rpt), np.int32(l2pf))
    grid = (col_tiles, splits, 1)
    pdl = pdl and bool(int(cfg.get("pdl", 1)))
    _launch(kern, grid, (256,), args, name, pdl=pdl)
    return {"kernel": name, "grid": grid, "rows_per_thread": rpt, "pdl": pdl, "l2pf": bool(l2pf)}


def _run_dequant(p: _Prepared, W) -> str:
    code = p.code
    name = f"w4_dequant<{code},{int(p.bf16)},{p.zoff},{int(p.g_idx is not None)}>"
    kern = _kernel(_DEQUANT_SRC, name)
    total = (p.K // 8) * (p.N // 8) if p.gptq else -(-p.K // 16) * (p.N // 8)
    gidx = p.g_idx if p.g_idx is not None else p.qw  # never read without GIDX
    args = (p.qw, p.qz, p.sc, gidx, W, np.int32(p.K), np.int32(p.N), np.int32(p.G))
    _launch(kern, (-(-total // 256),), (256,), args, name)
    return name


def dequantize_packed(layout_name: str, tensors: Mapping[str, Any], *, bits: int = 4, group_size: int,
                      scale_dtype: str = "F16", zero_offset: int | None = None, decode: str | None = None,
                      out=None, check: bool = False):
    """Packed module -> dense fp16 W [K, N] on the GPU (cupy array)."""
    cp = _cupy()
    p = tensors if isinstance(tensors, _Prepared) else _Prepared(
        layout_name, tensors, bits=bits, group_size=group_size, scale_dtype=scale_dtype,
        zero_offset=zero_offset, decode=decode)
    W = out if out is not None else cp.empty((p.K, p.N), dtype=cp.float16)
    if W.shape != (p.K, p.N) or W.dtype != cp.float16 or not W.flags.c_contiguous:
        raise GemmError("out must be a C-contiguous fp16 [K, N] array")
    _run_dequant(p, W)
    _check(check)
    return W


def gemm_packed(layout_name: str, tensors: Mapping[str, Any], x, *, bits: int = 4, group_size: int,
                scale_dtype: str = "F16", zero_offset: int | None = None, method: str = "auto",
                decode: str | None = None, out=None, config: dict | None = None, check: bool = False,
                info: dict | None = None, workspace: Workspace | None = None):
    """y = x @ W for a packed 4-bit module, on the GPU. Returns a cupy fp16 array [M, N].

    layout_name: "awq" | "logical" | "gptq" | "gptq-v2". tensors: {"qweight", "qzeros", "scales"[, "g_idx"]}
    as numpy or cupy arrays (the spec's short names). x: [M, K] or [K] (converted to fp16).
    scale_dtype: "F16" | "BF16" (raw uint16 bits) | "F32" (narrowed to fp16). zero_offset: stored = z + offset
    (default from the layout spec: -1 for gptq, 0 otherwise). method: "auto" | "skinny" | "dequant".
    decode: "lop3" | "shift" (only "logical" has both). config: overrides for the kernel that runs (skinny:
    {wc, nt, pf, chk, warps, target_blocks | sm_mult | splits}; gemv: {vw, fl, pf, waves, rpt, target_blocks, l2pf};
    both: pdl 0 launches a prepared module without programmatic dependent launch, see awqfmt/gpu/launch.py).
    method "gemv" takes 1 to GEMV_MAX_M tokens. info: if a dict is passed, it receives what ran.
    workspace: the split-K workspace to reduce through (default: one shared per device); pass a `Workspace()` of
    its own to each stream that runs GEMMs at the same time as another stream.
    """
    cp = _cupy()
    if workspace is not None and not isinstance(workspace, Workspace):
        raise GemmError(f"workspace must be an awqfmt.gpu.Workspace, got {type(workspace).__name__}")
    p = tensors if isinstance(tensors, _Prepared) else _Prepared(
        layout_name, tensors, bits=bits, group_size=group_size, scale_dtype=scale_dtype,
        zero_offset=zero_offset, decode=decode)
    xd = cp.asarray(x)
    if xd.ndim == 1:
        xd = xd.reshape(1, -1)
    if xd.ndim != 2 or xd.shape[1] != p.K:
        raise GemmError(f"x has shape {tuple(xd.shape)}, expected [M, {p.K}]")
    if xd.dtype != cp.float16:
        xd = xd.astype(cp.float16)
    xd = _dev(xd, cp.float16, "x")
    M = int(xd.shape[0])
    y = out if out is not None else cp.empty((M, p.N), dtype=cp.float16)
    if y.shape != (M, p.N) or y.dtype != cp.float16 or not y.flags.c_contiguous:
        raise GemmError(f"out must be a C-contiguous fp16 array of shape {(M, p.N)}")
    if M == 0:
        return y
    if method == "auto":
        method = pick_method(M, p)
    if method == "gemv":
        if not p.gemv_ok:
            raise GemmUnsupported("the gemv kernel needs group_size % 32 == 0 (or one group) and no act-order g_idx")
        if M > GEMV_MAX_M:
            raise GemmUnsupported(f"the gemv kernel takes at most {GEMV_MAX_M} tokens (got M={M}); use skinny")
        ran = _run_gemv(p, xd, y, M, config, pdl=p.pdl_safe and pdl_available(), workspace=workspace)
    elif method == "skinny":
        if not p.skinny_ok:
            raise GemmUnsupported("the skinny kernel needs group_size % 32 == 0 (or one group) and no act-order g_idx")
        ran = _run_skinny(p, xd, y, M, config, pdl=p.pdl_safe and pdl_available(), workspace=workspace)
    elif method == "dequant":
        W = _dequant_buffer(p.K * p.N).reshape(p.K, p.N)
        ran = {"kernel": _run_dequant(p, W) + " + cupy.matmul"}
        try:
            cp.matmul(xd, W, out=y)
        except Exception as exc:
            raise GemmError(f"cupy.matmul failed: {exc}") from exc
    else:
        raise GemmError(f"unknown method {method!r} (auto, gemv, skinny, dequant)")
    _check(check)
    if info is not None:
        info.update(ran, method=method)
    return y


def prepare(layout_name: str, tensors: Mapping[str, Any], *, bits: int = 4, group_size: int,
            scale_dtype: str = "F16", zero_offset: int | None = None, decode: str | None = None) -> _Prepared:
    """Upload and validate a module once (for repeated gemm_packed calls: pass the result as `tensors`).

    The result's device tensors are complete when this returns (it synchronizes the device), so the small-M
    kernels may read them before the kernel ahead of them in the stream has finished (PDL, see
    awqfmt/gpu/launch.py). Do not write into them afterwards."""
    p = _Prepared(layout_name, tensors, bits=bits, group_size=group_size, scale_dtype=scale_dtype,
                  zero_offset=zero_offset, decode=decode)
    _cupy().cuda.Device().synchronize()
    p.pdl_safe = True
    return p


def bytes_moved(K: int, N: int, M: int, group_size: int) -> int:
    """Fewest bytes a W4A16 GEMM must move: packed weights, zeros, scales, x and y, once each."""
    n_g = K // (K if group_size in (-1, 0) else group_size)
    return K * N // 2 + n_g * N // 2 + n_g * N * 2 + M * K * 2 + M * N * 2


__all__ = ["GEMV_AUTO_MAX_M", "GEMV_MAX_M", "GemmError", "Workspace", "GemmUnsupported", "supports", "SKINNY_MAX_M", "TUNED", "TUNED_GEMV", "TUNED_METHOD",
           "bytes_moved", "gemv_candidate_configs", "gemv_key", "candidate_configs", "m_bucket", "tuning_key", "dequantize_packed", "gemm_packed", "gpu_available",
           "kernels_dir", "pick_method", "prepare"]

