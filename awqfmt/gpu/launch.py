"""Kernel launches with programmatic dependent launch (PDL, Hopper and later), through the driver API.

CuPy launches kernels with cuLaunchKernel, which takes no launch attributes. A launch with the attribute
CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION may start while the kernel before it in the stream is
still finishing: its blocks are scheduled as the earlier kernel's blocks exit, request their first weights,
and wait in `griddepcontrol.wait` (pdl_wait in kernels/w4a16_common.cuh) before they read x or write
anything. For the small-M kernels that hides the launch and the first loads' latency behind the tail of the
kernel before (a decode step is a chain of such launches; CUDA-graph capture keeps the overlap).

The kernels may read the module's tensors before that wait, so only modules that no kernel can still be
writing may be launched this way: `gemm.prepare()` synchronizes after uploading and marks its result
(`pdl_safe`); modules built inside a `gemm_packed` call are launched the plain way. AWQFMT_PDL=0 turns PDL off.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any, Sequence

import numpy as np

CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION = 6  # CUlaunchAttributeID (cuda.h)


class _AttrValue(ctypes.Union):
    _fields_ = [("pad", ctypes.c_char * 64), ("programmatic_stream_serialization_allowed", ctypes.c_int)]


class _Attr(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int), ("pad", ctypes.c_char * 4), ("value", _AttrValue)]


class _Config(ctypes.Structure):
    _fields_ = [("grid_x", ctypes.c_uint), ("grid_y", ctypes.c_uint), ("grid_z", ctypes.c_uint),
                ("block_x", ctypes.c_uint), ("block_y", ctypes.c_uint), ("block_z", ctypes.c_uint),
                ("shared_mem", ctypes.c_uint), ("stream", ctypes.c_void_p),
                ("attrs", ctypes.POINTER(_Attr)), ("num_attrs", ctypes.c_uint)]


_state: dict[str, Any] = {}


def _driver():
    """libcuda's cuLaunchKernelEx, or None where the driver has none (CUDA < 12)."""
    if "lib" not in _state:
        lib = None
        try:
            cand = ctypes.CDLL("libcuda.so.1")
            cand.cuLaunchKernelEx.restype = ctypes.c_int
            cand.cuLaunchKernelEx.argtypes = [ctypes.POINTER(_Config), ctypes.c_void_p,
                                              ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p]
            lib = cand
        except (OSError, AttributeError):
            pass
        _state["lib"] = lib
    return _state["lib"]


def pdl_available() -> bool:
    """PDL launches possible here: not turned off, the driver has cuLaunchKernelEx, compute capability >= 9.0."""
    if os.environ.get("AWQFMT_PDL") == "0":
        return False
    import cupy as cp

    try:
        dev = cp.cuda.runtime.getDevice()
    except Exception:
        return False
    ccs = _state.setdefault("cc", {})  # per device: one host may mix GPU generations
    if dev not in ccs:
        try:
            ccs[dev] = int(cp.cuda.Device(dev).compute_capability)
        except Exception:
            ccs[dev] = 0
    return ccs[dev] >= 90 and _driver() is not None


_CTYPES = {np.dtype(np.int32): ctypes.c_int32, np.dtype(np.uint32): ctypes.c_uint32,
           np.dtype(np.int64): ctypes.c_int64, np.dtype(np.uint64): ctypes.c_uint64,
           np.dtype(np.float32): ctypes.c_float}


def _arg(a) -> ctypes._SimpleCData:
    """A kernel argument as the C value the kernel's parameter expects."""
    data = getattr(a, "data", None)
    if hasattr(data, "ptr"):  # cupy array: its device pointer
        return ctypes.c_void_p(data.ptr)
    if isinstance(a, np.generic):
        ctype = _CTYPES.get(a.dtype)
        if ctype is not None:
            return ctype(a.item())
    raise TypeError(f"kernel argument of type {type(a).__name__} {getattr(a, 'dtype', '')} not supported")


def _pdl_attr() -> _Attr:
    attr = _Attr(id=CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION)
    attr.value.programmatic_stream_serialization_allowed = 1
    return attr


_ATTR = _pdl_attr()  # read by the driver at each launch, never written
_functions: dict[int, tuple[Any, int]] = {}  # id(kernel) -> (kernel, CUfunction): `kernel.kernel` costs a lookup


def _function(kern) -> int:
    hit = _functions.get(id(kern))
    if hit is None or hit[0] is not kern:  # the kernel object itself: an id may be reused once one is freed
        hit = _functions[id(kern)] = (kern, int(kern.kernel.ptr))  # awqfmt's kernels each serve one device
    return hit[1]


def launch_pdl(kern, grid: Sequence[int], block: Sequence[int], args: Sequence[Any], shared_mem: int = 0) -> None:
    """Launch CuPy kernel `kern` on the current CuPy stream with programmatic stream serialization allowed.
    Raises RuntimeError with the driver's message when the launch fails. Host cost (a fake driver, this 2-core
    machine): 14 us per launch; building the argument list per call as first written took 36 us."""
    import cupy as cp

    lib = _driver()
    grid = tuple(grid) + (1,) * (3 - len(grid))
    block = tuple(block) + (1,) * (3 - len(block))
    values = [_arg(a) for a in args]  # alive until the driver has copied them (it does so inside the call)
    params = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
    cfg = _Config(*grid, *block, int(shared_mem), cp.cuda.get_current_stream().ptr, ctypes.pointer(_ATTR), 1)
    res = lib.cuLaunchKernelEx(ctypes.byref(cfg), _function(kern), params, None)
    if res != 0:
        msg = ctypes.c_char_p()
        lib.cuGetErrorString(res, ctypes.byref(msg))
        raise RuntimeError(f"cuLaunchKernelEx: {res} {msg.value.decode() if msg.value else ''}".strip())
