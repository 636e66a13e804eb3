"""Backends that multiply fp16 activations by one module's weights *as stored* (`awqfmt verify`).

Each backend reads the packed tensors of its layout itself; none goes through `logical.decode`, whose output is
what `verify` computes its float64 reference from. A packing, order, orientation or zero-offset mistake in either
path therefore shows up as a difference instead of cancelling out.

- `NumpyBackend`: a CPU GEMM that works field position by field position, like a kernel does: for each of the
  <= 32 fields of a packed block it shifts and masks the stored words into one plane, dequantizes that plane
  and multiplies it, scattering its output columns (fields packed along N: AWQ, logical) or gathering its
  activation rows (fields packed along K: GPTQ, compressed-tensors) by the spec's field order. It never builds
  the logical [K, N] code matrix. float32 throughout.
- `CupyBackend`: the CUDA kernels of `awqfmt.gpu` (4-bit awq / logical / gptq / gptq-v2); other layouts and
  widths fall back to numpy, module by module, and the report says so.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Protocol

import numpy as np

from . import dtypes
from .logical import infer_dims
from .spec import LayoutSpec, Packing, TensorSpec

BACKEND_CHOICES = ("auto", "cupy", "numpy")


class BackendUnavailable(Exception):
    """The requested backend cannot run here (no GPU, no CuPy): a usage error."""


class BackendFailed(Exception):
    """The backend has a kernel for the module but running it failed (compile, launch, device error)."""


class BackendCannotRun(Exception):
    """The backend has no kernel for this module's shape or options (it ran on numpy instead)."""


class Backend(Protocol):
    name: str
    array_module: object  # numpy or cupy: where verify builds and multiplies its float64 reference

    def supports(self, spec: LayoutSpec, bits: int) -> bool: ...

    def gemm(self, spec: LayoutSpec, tensors: Mapping[str, np.ndarray], dtype_names: Mapping[str, str],
             bits: int, group_size: int, x: np.ndarray) -> np.ndarray: ...


# ---- numpy: field-plane GEMM straight from the stored words -------------------------------------------------

def _as_u32(words: np.ndarray) -> np.ndarray:
    a = np.asarray(words)
    return a.view(np.uint32) if a.dtype.itemsize == 4 and a.dtype.kind in "iu" else a.astype(np.uint32)


def field_planes(stored: np.ndarray, tensor: TensorSpec, packing: Packing) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """For each field position of a packed block: (logical indices along the packed axis, the fields there).

    A plane keeps the stored tensor's shape with the packed axis shortened to one entry per block; it is
    returned in the tensor's *logical* orientation ([K, N] codes, [n_g, N] zeros). An unpacked tensor is one
    plane holding every index."""
    if tensor.packed_dim is None:
        arr = np.asarray(stored)
        yield np.empty(0, dtype=np.int64), (arr.T if tensor.transposed else arr)  # indices: the whole axis
        return
    w = np.moveaxis(_as_u32(stored), tensor.packed_dim, -1)
    if w.shape[-1] % packing.words:
        raise ValueError(f"{tensor.name}: {w.shape[-1]} words along the packed axis is not a whole number of "
                         f"{packing.words}-word blocks")
    n_blocks = w.shape[-1] // packing.words
    blocks = w.reshape(*w.shape[:-1], n_blocks, packing.words)
    mask = np.uint32((1 << packing.bits) - 1)
    first = np.arange(n_blocks, dtype=np.int64) * packing.values
    for pos, logical in enumerate(packing.order):
        word, shift = divmod(pos * packing.bits, 32)
        plane = blocks[..., word] >> np.uint32(shift)
        if shift + packing.bits > 32:  # the field straddles into the next word (GPTQ 3-bit)
            plane = plane | (blocks[..., word + 1] << np.uint32(32 - shift))
        plane = np.moveaxis(plane & mask, -1, tensor.packed_dim)
        yield first + logical, (plane.T if tensor.transposed else plane)


def _logical_packed_axis(tensor: TensorSpec) -> int:
    """Axis of the logical tensor ([K, N] or [n_g, N]) that the stored tensor packs."""
    return 1 if tensor.dims[tensor.packed_dim] == "N" else 0


def _unpacked_zeros(spec: LayoutSpec, tensors, bits: int, n_g: int, N: int) -> np.ndarray:
    """Zero points [n_g, N] as float32, assembled plane by plane from the stored words."""
    zt = spec.tensor("zeros")
    if zt is None or zt.name not in tensors:
        return np.full((n_g, N), float(1 << (bits - 1)), dtype=np.float32)  # symmetric: zeros not stored
    zeros = np.empty((n_g, N), dtype=np.float32)
    if zt.packed_dim is None:
        _, plane = next(field_planes(tensors[zt.name], zt, spec.packing(bits)))
        zeros[:] = plane
    else:
        axis = _logical_packed_axis(zt)
        length = zeros.shape[axis]
        for idx, plane in field_planes(tensors[zt.name], zt, spec.packing(bits)):
            keep = idx < length  # the last block may be padding
            if axis == 1:
                zeros[:, idx[keep]] = plane[:, keep]
            else:
                zeros[idx[keep], :] = plane[keep, :]
    return zeros - np.float32(spec.zero_offset)  # GPTQ v1 stores z - 1; read as the CUDA kernels do (no mask)


def _dequant_product(xr: np.ndarray, plane: np.ndarray, zeros: np.ndarray, scales: np.ndarray, g: np.ndarray) -> np.ndarray:
    """xr [M, R] @ ((plane - zeros[g]) * scales[g]) for a plane [R, C] whose row r belongs to group g[r].

    When the rows come in equal runs of consecutive groups (no act-order), the per-group zeros and scales are
    broadcast over a [groups, run, C] view instead of gathered row by row: same formula, a third of the memory
    traffic."""
    R, C = plane.shape
    n = int(g[-1]) + 1 if R else 0
    if n and R % n == 0 and g[0] == 0 and np.array_equal(g, np.arange(R) // (R // n)):
        w = plane.reshape(n, R // n, C).astype(np.float32)
        w -= zeros[:n, None, :]
        w *= scales[:n, None, :]
        return xr @ w.reshape(R, C)
    return xr @ ((plane.astype(np.float32) - zeros[g]) * scales[g])


def numpy_packed_gemm(spec: LayoutSpec, tensors: Mapping[str, np.ndarray], dtype_names: Mapping[str, str],
                      bits: int, group_size: int, x: np.ndarray) -> np.ndarray:
    """y [M, N] float32 = x [M, K] @ W, with W dequantized from the stored words one field plane at a time."""
    K, N = infer_dims(spec, tensors, bits)
    group = K if group_size == -1 else group_size
    n_g = -(-K // group)
    st, ct, gt = spec.tensor("scales"), spec.tensor("codes"), spec.tensor("g_idx")
    scales = dtypes.to_float32(tensors[st.name], dtype_names[st.name])
    scales = scales.T if st.transposed else scales
    zeros = _unpacked_zeros(spec, tensors, bits, n_g, N)
    if gt is not None and gt.name in tensors:
        g_idx = np.asarray(tensors[gt.name]).astype(np.int64)
    else:
        g_idx = np.arange(K, dtype=np.int64) // group
    xf = np.asarray(x, dtype=np.float32)
    if ct.packed_dim is None:
        _, codes = next(field_planes(tensors[ct.name], ct, spec.packing(bits)))
        return _dequant_product(xf, codes, zeros, scales, g_idx)
    y = np.zeros((xf.shape[0], N), dtype=np.float32)
    axis = _logical_packed_axis(ct)
    for idx, plane in field_planes(tensors[ct.name], ct, spec.packing(bits)):
        valid = int(np.searchsorted(idx, N if axis == 1 else K))  # idx ascends; past it is the last block's padding
        idx = idx[:valid]
        if axis == 1:  # fields packed along N: this plane is the output columns idx, over all K
            y[:, idx] = _dequant_product(xf, plane[:, :valid], np.ascontiguousarray(zeros[:, idx]),
                                         np.ascontiguousarray(scales[:, idx]), g_idx)
        else:  # fields packed along K: this plane is the input rows idx, over all N
            y += _dequant_product(xf[:, idx], plane[:valid], zeros, scales, g_idx[idx])
    return y


class NumpyBackend:
    name = "numpy"
    array_module = np  # where verify computes its float64 reference

    def supports(self, spec: LayoutSpec, bits: int) -> bool:
        return bits in spec.bits

    def gemm(self, spec, tensors, dtype_names, bits, group_size, x):
        return numpy_packed_gemm(spec, tensors, dtype_names, bits, group_size, x)


# ---- cupy: awqfmt.gpu's kernels ----------------------------------------------------------------------------

def gpu_available() -> bool:
    """True when awqfmt.gpu imports and reports a usable GPU. Never raises."""
    try:
        from . import gpu  # noqa: PLC0415 - optional: needs CuPy
        return bool(gpu.gpu_available())
    except Exception:  # noqa: BLE001 - no CuPy, no driver, no awqfmt.gpu: all mean "no GPU backend"
        return False


class CupyBackend:
    name = "cupy"
    warm_up = True  # verify runs each module twice and times the second call (the first may compile the kernel)

    def __init__(self):
        import cupy  # noqa: PLC0415

        from . import gpu  # noqa: PLC0415
        self._gpu = gpu
        self.array_module = cupy  # the float64 reference runs on the GPU too

    def supports(self, spec: LayoutSpec, bits: int) -> bool:
        return self._gpu.supports(spec.name, bits)

    def gemm(self, spec, tensors, dtype_names, bits, group_size, x):
        st = spec.tensor("scales")
        stored = {short: np.ascontiguousarray(arr) for short, arr in tensors.items()}
        try:
            y = self._gpu.gemm_packed(spec.name, stored, np.ascontiguousarray(x, dtype=np.float16), bits=bits,
                                      group_size=group_size, scale_dtype=dtype_names[st.name], zero_offset=spec.zero_offset)
        except self._gpu.GemmUnsupported as exc:
            raise BackendCannotRun(str(exc)) from exc
        except self._gpu.GemmError as exc:  # a compile or launch failure: the kernel is broken here, not a gap
            raise BackendFailed(str(exc)) from exc
        y = y.get() if hasattr(y, "get") else y  # a cupy array: copy back (this also waits for the kernel)
        return np.asarray(y, dtype=np.float32)


def select_backend(choice: str) -> tuple[Backend, str | None]:
    """-> (backend, a note for the report or None). `cupy` without a GPU raises BackendUnavailable."""
    if choice not in BACKEND_CHOICES:
        raise BackendUnavailable(f"unknown backend {choice!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if choice == "numpy":
        return NumpyBackend(), None
    if gpu_available():
        return CupyBackend(), None
    if choice == "cupy":
        raise BackendUnavailable("--backend cupy needs CuPy and an NVIDIA GPU, and none is usable here "
                                 "(install CuPy, the `gpu` extra of awqfmt, on a machine with a GPU, or use --backend numpy)")
    return NumpyBackend(), "no usable GPU (CuPy + NVIDIA driver) found: verifying with the numpy backend instead"
