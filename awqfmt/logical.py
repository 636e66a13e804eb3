"""The logical form every layout decodes to and encodes from (2 x N functions, not N^2 converters).

    W[n, k] = (codes[k, n] - zeros[g_idx[k], n]) * scales[g_idx[k], n]

`codes` uint8 [K, N]; `zeros` uint16 [n_g, N] (the real zero point; uint16 because a GPTQ v1 stored field of
2^b - 1 means 2^b, which does not fit 8 bits when b = 8); `scales` [n_g, N] in their storage dtype (bit-exact;
BF16 as raw uint16); `g_idx` int32 [K] or None for the trivial `k // G`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from . import dtypes
from .packing import pack, unpack
from .spec import LayoutSpec, TensorSpec, evaluate


class RepresentationError(ValueError):
    """The logical data cannot be stored in the target layout without changing the weights."""

    def __init__(self, code: str, message: str, hint: str | None = None):
        super().__init__(message)
        self.code = code
        self.hint = hint


class DecodeError(ValueError):
    """Stored tensors do not fit the layout (shape, dtype, missing tensor)."""

    def __init__(self, code: str, message: str, tensor: str | None = None):
        super().__init__(message)
        self.code = code
        self.tensor = tensor


@dataclass
class LogicalModule:
    bits: int
    group_size: int
    codes: np.ndarray
    zeros: np.ndarray
    scales: np.ndarray
    scale_dtype: str
    g_idx: np.ndarray | None = None
    symmetric: bool | None = None
    extras: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)  # bias etc., copied as stored
    dims: tuple[int, int] | None = None  # (K, N) when `codes` was not decoded (a caller repacks the words itself)

    @property
    def K(self) -> int:
        return self.codes.shape[0] if self.codes is not None else self.dims[0]

    @property
    def N(self) -> int:
        return self.codes.shape[1] if self.codes is not None else self.dims[1]

    @property
    def n_groups(self) -> int:
        return self.scales.shape[0]

    def trivial_g_idx(self) -> np.ndarray:
        group = self.K if self.group_size == -1 else self.group_size
        return (np.arange(self.K, dtype=np.int32) // group).astype(np.int32)

    def effective_g_idx(self) -> np.ndarray:
        return self.trivial_g_idx() if self.g_idx is None else self.g_idx

    def has_act_order(self) -> bool:
        return self.g_idx is not None and not np.array_equal(self.g_idx, self.trivial_g_idx())

    def is_symmetric(self) -> bool:
        if self.symmetric is not None:
            return self.symmetric
        return bool(np.all(self.zeros == (1 << (self.bits - 1))))

    def dequantize(self, dtype=np.float32) -> np.ndarray:
        """[K, N] weights: (codes - zeros[g]) * scales[g], computed in `dtype`."""
        g = self.effective_g_idx()
        s = dtypes.to_float32(self.scales, self.scale_dtype).astype(dtype)
        return (self.codes.astype(dtype) - self.zeros[g].astype(dtype)) * s[g]


class _ShapeOnly:
    def __init__(self, array: np.ndarray):
        self._a = array
        self.shape = array.shape

    def values(self):
        return np.asarray(self._a).reshape(-1)


def infer_dims(spec: LayoutSpec, tensors: Mapping[str, np.ndarray], bits: int) -> tuple[int, int]:
    """K and N from the spec's `infer` formulas (shapes, or values of e.g. compressed-tensors' weight_shape)."""
    packing = spec.packing(bits)
    view = {name: a if hasattr(a, "values") and not isinstance(a, np.ndarray) else _ShapeOnly(a) for name, a in tensors.items()}
    K = evaluate(spec.infer["K"], {}, packing=packing, tensors=view)
    N = evaluate(spec.infer["N"], {}, packing=packing, tensors=view)
    return int(K), int(N)


def _to_logical(stored: np.ndarray, t: TensorSpec, spec: LayoutSpec, bits: int, length: int) -> np.ndarray:
    """Unpack (if packed) and transpose a stored tensor into its logical orientation."""
    if t.packed_dim is not None:
        stored = unpack(stored, spec.packing(bits), axis=t.packed_dim, length=length)
    return stored.T if t.transposed else stored


def _to_stored(logical: np.ndarray, t: TensorSpec, spec: LayoutSpec, bits: int) -> np.ndarray:
    arr = logical.T if t.transposed else logical
    if t.packed_dim is not None:
        return pack(arr, spec.packing(bits), axis=t.packed_dim)
    return np.ascontiguousarray(arr)


def decode(
    spec: LayoutSpec,
    tensors: Mapping[str, np.ndarray],
    dtype_names: Mapping[str, str],
    bits: int,
    group_size: int,
    *,
    symmetric: bool | None = None,
    v1_all_ones: str = "kernel",
    with_codes: bool = True,
) -> LogicalModule:
    """Stored tensors of one module (keys are the spec's short names) -> LogicalModule.

    `v1_all_ones`: how to read a GPTQ v1 zero field of 2^b - 1: "kernel" (mask then +1 = 2^b, what the CUDA and
    exllama kernels compute) or "mask" (+1 then mask = 0, AutoGPTQ's qlinear_cuda_old torch path).
    `with_codes=False` leaves `codes` None (shapes are still validated): for callers that repack the packed
    words directly (awqfmt.repack) and need only the small tensors in logical form.
    """
    for t in spec.tensors:
        if not t.optional and t.name not in tensors:
            raise DecodeError("module.missing-tensor", f"missing tensor {t.name!r} required by layout {spec.name}", t.name)
    K, N = infer_dims(spec, tensors, bits)
    G = group_size
    for t in spec.tensors:
        if t.name in tensors and t.role != "shape":
            want = spec.expected_shape(t, K, N, G, bits)
            got = tuple(tensors[t.name].shape)
            if got != want:
                raise DecodeError("shape.mismatch", f"{t.name} has shape {list(got)}, layout {spec.name} expects {list(want)}"
                                  f" for K={K}, N={N}, group_size={G}, bits={bits}", t.name)
    env = spec.dims_env(K, N, G, bits)
    n_g = env["n_g"]
    ct, zt, st = spec.tensor("codes"), spec.tensor("zeros"), spec.tensor("scales")
    codes = None
    if with_codes:
        codes = _to_logical(tensors[ct.name], ct, spec, bits, None if ct.packed_dim is None else K if ct.dims[ct.packed_dim] == "K" else N)
        if ct.packed_dim is None and codes.size and int(codes.max()) >> bits:
            raise DecodeError("values.code-range", f"{ct.name} holds a code of {int(codes.max())}, which does not fit {bits} bits", ct.name)
    if zt.name in tensors:
        stored = _to_logical(tensors[zt.name], zt, spec, bits, N).astype(np.int32)
        if zt.packed_dim is None and stored.size and (stored.min() < 0 or stored.max() > _zero_max(spec, bits)):
            raise DecodeError("values.zero-range", f"{zt.name} holds zero points in [{int(stored.min())}, {int(stored.max())}], "
                              f"outside [0, {_zero_max(spec, bits)}] for {bits} bits", zt.name)
        zeros = stored - spec.zero_offset  # v1 stores z - 1
        if v1_all_ones == "mask":
            zeros &= (1 << bits) - 1
        zeros = zeros.astype(np.uint16)
    else:
        zeros = np.full((n_g, N), 1 << (bits - 1), dtype=np.uint16)
        symmetric = True
    scales = _to_logical(np.asarray(tensors[st.name]), st, spec, bits, n_g)
    gt = spec.tensor("g_idx")
    g_idx = None
    if gt is not None and gt.name in tensors:
        g_idx = np.asarray(tensors[gt.name]).astype(np.int32)
    extras = {}
    bt = spec.tensor("bias")
    if bt is not None and bt.name in tensors:
        extras["bias"] = (np.asarray(tensors[bt.name]), dtype_names[bt.name])
    module = LogicalModule(bits=bits, group_size=G, codes=None if codes is None else np.ascontiguousarray(codes),
                           zeros=np.ascontiguousarray(zeros), scales=np.ascontiguousarray(scales),
                           scale_dtype=dtype_names[st.name], g_idx=g_idx, symmetric=symmetric, extras=extras, dims=(K, N))
    if g_idx is not None and not module.has_act_order():
        module.g_idx = None
    return module


def _zero_max(spec: LayoutSpec, bits: int) -> int:
    return int(evaluate(spec.zero_max, {"b": bits}))


def _plain_dtype(t: TensorSpec, values: np.ndarray) -> tuple[np.ndarray, str]:
    """An unpacked integer tensor in the narrowest of the spec's dtypes that holds it."""
    top = int(values.max()) if values.size else 0
    for name in t.dtypes:
        if top <= np.iinfo(dtypes.STORAGE[name]).max:
            return np.ascontiguousarray(values.astype(dtypes.STORAGE[name])), name
    raise RepresentationError("convert.value-range", f"{t.name} holds {top}, which none of {list(t.dtypes)} can store")


def encode(spec: LayoutSpec, module: LogicalModule) -> dict[str, tuple[np.ndarray, str]]:
    """LogicalModule -> {short tensor name: (array, safetensors dtype)} in `spec`'s layout.

    Raises RepresentationError for anything the layout cannot hold exactly. A module decoded with
    `with_codes=False` yields every tensor but the codes."""
    b = module.bits
    if b not in spec.bits:
        raise RepresentationError(
            "convert.bits-unsupported", f"layout {spec.name} has no {b}-bit packing (it supports {list(spec.bits)})",
            "choose a layout that packs this width, e.g. gptq-v2 or compressed-tensors")
    if spec.g_idx == "none" and module.has_act_order():
        raise RepresentationError(
            "convert.act-order", f"layout {spec.name} has no g_idx, and this module's g_idx is not k // group_size "
            "(act-order); reordering would change the weights", "convert to gptq, gptq-v2 or compressed-tensors instead")
    top = _zero_max(spec, b)
    stored_zeros = module.zeros.astype(np.int32) + spec.zero_offset
    if stored_zeros.size and (stored_zeros.min() < 0 or stored_zeros.max() > top):
        bad = int(np.count_nonzero((stored_zeros < 0) | (stored_zeros > top)))
        if spec.zero_offset < 0:
            raise RepresentationError(
                "convert.zero-unrepresentable",
                f"{bad} zero point(s) equal 0, which GPTQ v1 (stores zero - 1) cannot represent",
                "convert to gptq-v2 or compressed-tensors, which store the zero point as is")
        raise RepresentationError(
            "convert.zero-unrepresentable", f"{bad} zero point(s) equal {1 << b}, which {spec.name} cannot store in {b} bits",
            "keep the GPTQ v1 layout, or decide how the source's all-ones v1 fields should be read")
    K, N, G = module.K, module.N, module.group_size
    out: dict[str, tuple[np.ndarray, str]] = {}
    for t in spec.tensors:
        if t.role == "codes":
            if module.codes is None:
                continue
            out[t.name] = (_to_stored(module.codes, t, spec, b), "I32") if t.packed_dim is not None else \
                _plain_dtype(t, _to_stored(module.codes, t, spec, b))
        elif t.role == "zeros":
            if spec.zeros_when_symmetric == "absent" and module.is_symmetric():
                continue
            out[t.name] = (_to_stored(stored_zeros.astype(np.uint8), t, spec, b), "I32") if t.packed_dim is not None else \
                _plain_dtype(t, _to_stored(stored_zeros, t, spec, b))
        elif t.role == "scales":
            out[t.name] = (_to_stored(module.scales, t, spec, b), module.scale_dtype)
        elif t.role == "g_idx":
            if spec.g_idx == "always" or module.has_act_order():
                out[t.name] = (module.effective_g_idx().astype(np.int32), "I32")
        elif t.role == "shape":
            out[t.name] = (np.array([N, K], dtype=np.int64), "I64")
        elif t.role in module.extras:
            out[t.name] = module.extras[t.role]
    for t in spec.tensors:
        if t.name in out and t.role not in ("shape",):
            want = spec.expected_shape(t, K, N, G, b)
            assert out[t.name][0].shape == want, (t.name, out[t.name][0].shape, want)
    return out
