"""GPU (CuPy) kernels for packed 4-bit weights: W4A16 GEMM on AWQ, natural-order and GPTQ layouts.

Importing this package never needs CuPy; CuPy is imported on first use. `gpu_available()` says whether a
launch can work here (never raises).
"""

from .gemm import (
    GemmError,
    GemmUnsupported,
    Workspace,
    dequantize_packed,
    gemm_packed,
    gpu_available,
    kernels_dir,
    pick_method,
    prepare,
    supports,
)

__all__ = ["GemmError", "GemmUnsupported", "Workspace", "dequantize_packed", "gemm_packed", "gpu_available", "kernels_dir", "pick_method",
           "prepare", "supports"]
