"""Value rules: scales finite and > 0, g_idx range and counts, the zero-point convention (GPTQ v1 vs v2,
AutoGPTQ's v1 packer corruption). Only the small tensors are read in full."""

from __future__ import annotations

import numpy as np

from .. import dtypes
from ..findings import Finding
from ..modules import Fit
from ..packing import unpack
from ..spec import LayoutSpec
from .pack_order import order_findings, sample_codes
from .common import read_tensor, shape_facts



def value_findings(ckpt, module, fit: Fit, cfg, deep, stats, err, warn, sample_order: bool = True) -> list[Finding]:
    out: list[Finding] = []
    spec, b, K, N, G = fit.spec, fit.bits, fit.K, fit.N, fit.G
    n_g = shape_facts(spec, K, N, G, b)[0]["n_g"]
    group = K if G == -1 or G > K else G  # a group_size beyond K (config-given) is one group
    # scales: finite and > 0, tested on the raw bits
    st = spec.tensor("scales")
    scales, sdt = read_tensor(ckpt, module, st.name)
    if sdt in dtypes.FLOAT_DTYPES and not _all_positive_finite(scales, sdt):
        bad_nf = int(np.count_nonzero(dtypes.nonfinite_mask(scales, sdt)))
        if bad_nf:
            err("values.scale-nonfinite", f"{bad_nf} of {scales.size} scales are inf or NaN", hint="the quantizer diverged on this module: re-quantize it",
                tensor=st.name, count=bad_nf)
        bad_np = int(np.count_nonzero(dtypes.nonpositive_mask(scales, sdt) & ~dtypes.nonfinite_mask(scales, sdt)))
        if bad_np:
            err("values.scale-nonpositive", f"{bad_np} of {scales.size} scales are <= 0", hint="AWQ/GPTQ scales are positive by construction: the tensor is corrupt",
                tensor=st.name, count=bad_np)
    # g_idx
    gt = spec.tensor("g_idx")
    g_idx = None
    if gt is not None and gt.name in module.tensors:
        raw, _ = read_tensor(ckpt, module, gt.name)
        g_idx = np.asarray(raw).astype(np.int64)
        if g_idx.size and (g_idx.min() < 0 or g_idx.max() >= n_g):
            err("values.g-idx-range", f"g_idx values span [{int(g_idx.min())}, {int(g_idx.max())}], outside [0, {n_g})",
                hint="g_idx must name a row of scales/qzeros", tensor=gt.name)
            g_idx = None
        else:
            counts = np.bincount(g_idx, minlength=n_g)
            if K % group == 0 and not np.all(counts == group):
                bad = int(np.count_nonzero(counts != group))
                err("values.g-idx-count", f"{bad} group(s) are used a number of times other than group_size={group} (min {int(counts.min())}, max {int(counts.max())})",
                    hint="each group must cover exactly group_size input channels", tensor=gt.name)
            trivial = np.array_equal(g_idx, np.arange(K) // group)
            if not trivial and cfg.get("desc_act") is False:
                err("values.g-idx-act-order", "g_idx is not k // group_size (act-order) but config says desc_act=false",
                    hint="loaders that trust desc_act=false ignore g_idx and compute garbage: set desc_act=true", tensor=gt.name)
            if trivial:
                g_idx = None
    # zeros
    zt = spec.tensor("zeros")
    if zt.name in module.tensors and _zero_rules_apply(spec):
        words, _ = read_tensor(ckpt, module, zt.name)
        zeros_stored = np.asarray(words) if zt.packed_dim is None else \
            unpack(np.asarray(words), spec.packing(b), axis=zt.packed_dim, length=n_g if zt.dims[zt.packed_dim] == "n_g" else N)
        zeros_stored = zeros_stored.T if zt.transposed else zeros_stored
        out += _zero_convention_findings(spec, b, zeros_stored, cfg, err, warn, np.asarray(words), zt)
    # codes sample: pack order of qzeros vs qweight, and (GPTQ) which zero convention the codes support
    if zt.name in module.tensors and sample_order:
        codes, rows_groups = sample_codes(ckpt, module, fit, g_idx, deep)
        if codes is not None:
            out += order_findings(ckpt, module, fit, codes, rows_groups, err, stats)
    return out


def _zero_rules_apply(spec: LayoutSpec) -> bool:
    """Whether `_zero_convention_findings` has a rule for this layout (AWQ, compressed-tensors: every field value is
    a valid zero point, so their qzeros are not unpacked in full)."""
    return spec.name in ("gptq", "gptq-v2") or spec.zero_offset < 0


def _zero_convention_findings(spec: LayoutSpec, b: int, fields: np.ndarray, cfg, err, warn, words: np.ndarray, zt) -> list[Finding]:
    """GPTQ v1 stores z-1, v2 (and AWQ, compressed-tensors) store z. Symmetric files have constant fields that
    reveal which convention was written; v1 asymmetric files cannot hold z = 0 (AutoGPTQ's packer corrupts it)."""
    out: list[Finding] = []
    half, top = 1 << (b - 1), (1 << b) - 1
    if fields.size == 0:
        return out
    if spec.name in ("gptq", "gptq-v2") and int(fields.min()) == int(fields.max()):  # two passes instead of a sort
        v = int(fields.min())
        written_as = "gptq" if v == half - 1 else "gptq-v2" if v == half else None
        if written_as and written_as != spec.name:
            err("zeros.v1-v2-mismatch",
                f"every zero field is {v:#x}: symmetric zeros written in {written_as} convention, but the checkpoint is labelled {spec.name}",
                hint=f"set checkpoint_format to {'gptq_v2' if written_as == 'gptq-v2' else 'gptq'} (or convert with awqfmt); read as labelled, every "
                     f"zero is off by one and the model prints garbage (vLLM#38966)", tensor=zt.name, stored_field=v)
    if spec.zero_offset < 0:  # v1: fields of all ones are ambiguous, and mark AutoGPTQ packer corruption
        all_ones = fields == top
        n_all = int(np.count_nonzero(all_ones))
        if n_all:
            corrupted = _v1_corrupted_words(words, spec, b, zt)
            if corrupted:
                err("zeros.v1-packer-corruption",
                    f"{corrupted} qzeros word(s) have a field of all ones with every higher field also all ones: AutoGPTQ's v1 packer stored a zero "
                    f"point of 0 as -1, which also overwrote the higher fields' zeros",
                    hint="the original zeros of those fields are lost: re-quantize with gptq_v2 (checkpoint_format gptq_v2) or a symmetric scheme",
                    tensor=zt.name, words=corrupted, all_ones_fields=n_all)
            else:
                warn("zeros.v1-all-ones",
                     f"{n_all} zero field(s) store {top:#x}: GPTQ v1 readers disagree on them (zero {top + 1} in CUDA/exllama kernels, 0 in masking readers)",
                     hint="convert to gptq-v2 or compressed-tensors, which store the zero point as is", tensor=zt.name, count=n_all)
    return out


def _v1_corrupted_words(words: np.ndarray, spec: LayoutSpec, b: int, zt) -> int:
    """Words where some field is all ones and all fields above it too (a sign-extended -1), but not every field."""
    p = spec.packing(b)
    if p.words != 1:
        return 0
    w = np.asarray(words).view(np.uint32).reshape(-1).astype(np.uint64)
    count = np.zeros(w.shape, dtype=bool)
    for pos in range(1, p.values):
        sh = pos * b
        high = (np.uint64(0xFFFFFFFF) >> np.uint64(sh)) << np.uint64(sh)
        all_high = (w & high) == high
        lower = w & ((np.uint64(1) << np.uint64(sh)) - np.uint64(1))
        count |= all_high & (lower != ((np.uint64(1) << np.uint64(sh)) - np.uint64(1)))
    return int(np.count_nonzero(count))


# positive finite floats are exactly the raw bit patterns 1 .. largest finite (sign 0, exponent not all ones, not 0)
_POSITIVE_FINITE = {"F16": (np.uint16, 0x7BFF), "BF16": (np.uint16, 0x7F7F), "F32": (np.uint32, 0x7F7FFFFF)}


def _all_positive_finite(values: np.ndarray, name: str) -> bool:
    """One min and one max over the raw bits of the memmap (no temporaries): the common clean case costs two
    streaming passes; only a tensor that fails gets the per-rule masks."""
    if name not in _POSITIVE_FINITE:
        return False
    udt, top = _POSITIVE_FINITE[name]
    raw = np.asarray(values).view(udt)
    return raw.size == 0 or (int(raw.min()) >= 1 and int(raw.max()) <= top)
