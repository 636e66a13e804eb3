"""`awqfmt verify --reference ORIGINAL`: the dequantized weights against the unquantized model, and which field
order reconstructs it best.

The field order of a packed word is a property of the layout, not of the data: nothing in the integers alone
proves it. The original weights do. Quantization leaves a small relative error ||W_q - W|| / ||W|| (a few
percent at 4 bits); reading qweight or qzeros in the wrong order permutes codes or zero points between columns
of one block and multiplies that error several times. So for every distinct field order the specs define at
the module's width, this module re-reads the stored words in that order, applied to qweight and qzeros together
and to each alone, and reports which reading is closest to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product
from typing import Mapping

import numpy as np

from . import dtypes
from .checkpoint import Checkpoint
from .findings import Finding, error, warning
from .logical import LogicalModule
from .packing import unpack
from .spec import LayoutSpec, Packing, TensorSpec, all_specs

WRONG_ORDER_RATIO = 1.5  # the stored reading must be this many times worse than the best before we call it wrong
FAR_FROM_ORIGINAL = 0.5  # best relative error above this: probably not the model it was quantized from


@dataclass
class OrderCandidate:
    label: str
    codes_order: tuple[int, ...]
    zeros_order: tuple[int, ...] | None
    rel_err: float

    def to_json(self) -> dict:
        return {"label": self.label, "codes_order": list(self.codes_order),
                "zeros_order": list(self.zeros_order) if self.zeros_order is not None else None,
                "rel_err": _finite(self.rel_err)}


@dataclass
class ReferenceModule:
    name: str
    rel_err: float  # as stored
    best: OrderCandidate
    candidates: list[OrderCandidate]
    findings: list[Finding] = field(default_factory=list)

    @property
    def stored_is_best(self) -> bool:
        return self.best.label == "as stored"

    def to_json(self) -> dict:
        return {"rel_err": _finite(self.rel_err), "best": self.best.label, "best_rel_err": _finite(self.best.rel_err),
                "stored_is_best": self.stored_is_best, "candidates": [c.to_json() for c in self.candidates]}


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None  # JSON has no NaN / inf


# Suffixes of an original weight, in order of preference: nn.Linear's own, then the `.orig` tensors that reference
# files of decoded fixtures keep beside the tools' decodes (../shared/fixtures/*.ref.safetensors).
WEIGHT_SUFFIXES = (".weight", ".orig")


class OriginalWeights:
    """The `<module>.weight` (or `<module>.orig`) tensors of the unquantized model, matched to quantized module
    names.

    Names usually agree exactly. Otherwise one side may carry an extra leading prefix (`model.`, `bert.`,
    `0.auto_model.` of sentence-transformers): a unique match up to such a prefix is accepted."""

    def __init__(self, orig: Checkpoint):
        self.orig = orig
        self.tensor_of: dict[str, str] = {}  # module -> the reference tensor holding its original weight
        for suffix in reversed(WEIGHT_SUFFIXES):  # the preferred suffix overwrites
            for n in orig.locations:
                if n.endswith(suffix):
                    self.tensor_of[n[: -len(suffix)]] = n
        self.modules = set(self.tensor_of)
        self._by_suffix: dict[str, list[str]] = {}
        for m in self.modules:
            parts = m.split(".")
            for i in range(1, len(parts)):
                self._by_suffix.setdefault(".".join(parts[i:]), []).append(m)

    def match(self, name: str) -> str | None:
        if name in self.modules:
            return name
        longer = self._by_suffix.get(name, [])  # the original's name has an extra prefix
        parts = name.split(".")
        shorter = [s for s in (".".join(parts[i:]) for i in range(1, len(parts))) if s in self.modules]  # ours has one
        found = set(longer) | set(shorter[:1])
        return found.pop() if len(found) == 1 else None

    def tensor_name(self, name: str) -> str | None:
        """The reference tensor that holds module `name`'s original weight, if any."""
        match = self.match(name)
        return None if match is None else self.tensor_of[match]

    def weight(self, name: str, K: int, N: int) -> tuple[np.ndarray | None, str | None]:
        """[N, K] float32 for module `name`; (None, None) when absent, (None, why) when unusable."""
        full = self.tensor_name(name)
        if full is None:
            return None, None
        entry = self.orig.entry(full)
        if entry.dtype not in dtypes.FLOAT_DTYPES:
            return None, f"reference tensor {full} is {entry.dtype}; an original weight is F16, BF16 or F32"
        if tuple(entry.shape) != (N, K):
            flipped = " (it looks transposed: nn.Linear stores [out_features, in_features])" if tuple(entry.shape) == (K, N) else ""
            return None, f"reference tensor {full} has shape {list(entry.shape)}, the quantized module needs [N={N}, K={K}]{flipped}"
        return dtypes.to_float32(self.orig.array(full), entry.dtype), None


def distinct_orders(packing: Packing) -> list[tuple[int, ...]]:
    """The stored order first, then every other order a spec defines for the same block shape and width."""
    orders = [packing.order]
    for spec in all_specs().values():
        if packing.bits in spec.bits:
            p = spec.packing(packing.bits)
            if (p.values, p.words) == (packing.values, packing.words) and p.order not in orders:
                orders.append(p.order)
    return orders


def order_name(order: tuple[int, ...], bits: int) -> str:
    if order == tuple(range(len(order))):
        return "natural"
    names = [s.name for s in all_specs().values() if bits in s.bits and s.packing(bits).order == order]
    return ("/".join(names) or "custom") + "-interleaved " + str(list(order)).replace(" ", "")


def _read(stored: np.ndarray, t: TensorSpec, packing: Packing, order: tuple[int, ...], length: int) -> np.ndarray:
    """The stored words read in `order` instead of the layout's own, in logical orientation."""
    p = Packing(packing.bits, packing.values, packing.words, order)
    vals = unpack(stored, p, axis=t.packed_dim, length=length)
    return vals.T if t.transposed else vals


def compare_with_original(name: str, spec: LayoutSpec, full_names: Mapping[str, str], tensors: Mapping[str, np.ndarray],
                          module: LogicalModule, original: np.ndarray) -> ReferenceModule:
    """Relative error of the dequantized weights vs `original` [N, K], for every reading of the field order."""
    bits, K, N = module.bits, module.K, module.N
    packing = spec.packing(bits)
    ct, zt = spec.tensor("codes"), spec.tensor("zeros")
    w_ref = np.ascontiguousarray(original.T)  # [K, N]
    ref_norm = float(np.linalg.norm(w_ref))
    g = module.effective_g_idx()
    scales = dtypes.to_float32(module.scales, module.scale_dtype)[g]
    has_zeros = zt is not None and zt.name in tensors

    codes_by_order, zeros_by_order = {packing.order: module.codes}, {}
    orders = distinct_orders(packing)
    if ct.packed_dim is not None:
        for o in orders[1:]:
            codes_by_order[o] = _read(tensors[ct.name], ct, packing, o, K if ct.dims[ct.packed_dim] == "K" else N)
    if has_zeros and zt.packed_dim is not None:
        for o in orders:
            zeros_by_order[o] = _read(tensors[zt.name], zt, packing, o, N).astype(np.float32) - spec.zero_offset
    else:  # zeros absent (symmetric) or stored unpacked: one reading
        zeros_by_order[None] = module.zeros.astype(np.float32)

    candidates = []
    for co, zo in product(codes_by_order, zeros_by_order):
        w = (codes_by_order[co].astype(np.float32) - zeros_by_order[zo][g]) * scales
        err = float(np.linalg.norm(w - w_ref)) / ref_norm if ref_norm > 0 else float("inf")
        candidates.append(OrderCandidate(_label(co, zo, packing.order, bits, ct.name, zt.name if zt else None), co, zo, err))
    stored = candidates[0]  # (stored codes order, stored zeros order) comes first in the product
    best = min(candidates, key=lambda c: c.rel_err)  # ties keep the first, i.e. as stored
    if best.rel_err >= stored.rel_err:
        best = stored
    result = ReferenceModule(name, stored.rel_err, best, candidates)
    if best is not stored and stored.rel_err > WRONG_ORDER_RATIO * best.rel_err:
        wrong = [full_names[ct.name]] if best.codes_order != packing.order else []
        if best.zeros_order is not None and best.zeros_order != packing.order:
            wrong.append(full_names[zt.name])
        result.findings.append(error(
            "reference.wrong-order",
            f"the dequantized weights match the original with relative error {best.rel_err:.4f} when read with {best.label}, "
            f"but {stored.rel_err:.4f} as stored ({spec.name} order {list(packing.order)}): {' and '.join(wrong)} packed in the wrong field order",
            hint=f"repack {' and '.join(wrong)} in {spec.name}'s order {list(packing.order)} (or label the checkpoint with the layout it was written in)",
            module=name, tensor=wrong[0],
            evidence={"stored_rel_err": _finite(stored.rel_err), "best_rel_err": _finite(best.rel_err), "best": best.label}))
    if best.rel_err > FAR_FROM_ORIGINAL:
        result.findings.append(warning(
            "reference.far-from-original",
            f"the dequantized weights differ from the original by {best.rel_err:.1%} (relative Frobenius error) even in the best reading",
            hint="is ORIGINAL the model this checkpoint was quantized from? (AWQ's scale search folds per-channel scales into the weights, "
                 "which also raises this number)", module=name, evidence={"best_rel_err": _finite(best.rel_err)}))
    return result


def _label(co, zo, stored, bits, codes_name, zeros_name) -> str:
    if co == stored and zo in (stored, None):
        return "as stored"
    if zo is None or co == zo:
        return f"{codes_name}{'' if zo is None else ' and ' + zeros_name} in {order_name(co, bits)} order"
    if co == stored:
        return f"{zeros_name} in {order_name(zo, bits)} order"
    if zo == stored:
        return f"{codes_name} in {order_name(co, bits)} order"
    return f"{codes_name} in {order_name(co, bits)}, {zeros_name} in {order_name(zo, bits)} order"
