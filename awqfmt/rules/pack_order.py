"""The pack-order rule: per (group, column) the median code sits at the zero point when qweight and qzeros use
the same field order. Default mode samples whole groups of qweight; --deep reads every row."""

from __future__ import annotations

import numpy as np

from ..findings import Finding
from ..modules import Fit, QuantModule
from ..packing import unpack
from ..spec import Packing, all_specs
from .common import read_tensor, shape_facts


SAMPLE_GROUPS = 6  # groups of qweight rows decoded per module, spread evenly over K (first, last, four between)


# Default mode decodes at most this many qweight codes per module (the sampled groups' rows, leading output
# columns): ~1k (group, column) cells at group 128, plenty to tell field orders apart, and a Llama-70B-shaped
# checkpoint stays within its 2 s budget (benchmarks/scale).
SAMPLE_CODES = 1 << 17


# ... and samples the pack order of at most this many modules per shape, evenly spread (all with --deep): a
# 100k-tensor MoE has thousands of identical experts whose qweight together is the whole checkpoint.
SAMPLE_MODULES_PER_SHAPE = 256


ORDER_MARGIN = 5.0  # percentage points another field order must win by before we call the stored order wrong


def sampled_groups(n_g: int, deep: bool) -> np.ndarray:
    """Indices of the groups whose qweight rows the default check decodes (all of them when deep)."""
    if deep or n_g <= SAMPLE_GROUPS:
        return np.arange(n_g)
    return np.unique(np.linspace(0, n_g - 1, SAMPLE_GROUPS).astype(int))


def sample_codes(ckpt, module, fit: Fit, g_idx, deep: bool):
    """Decoded codes [rows, N] for a sample of whole groups (all groups when deep), and each row's group."""
    spec, b, K, N, G = fit.spec, fit.bits, fit.K, fit.N, fit.G
    group = K if G == -1 or G > K else G
    n_g = -(-K // group)
    ct = spec.tensor("codes")
    words, _ = read_tensor(ckpt, module, ct.name)
    p = spec.packing(b)
    k_axis = ct.dims.index("K")
    if g_idx is not None:  # act-order: groups are scattered over K; read every row (of the leading columns)
        rows = np.arange(K)
        groups_of_rows = g_idx
    else:
        chosen = sampled_groups(n_g, deep)
        rows = (chosen[:, None] * group + np.arange(group)[None, :]).reshape(-1)
        rows = rows[rows < K]
        groups_of_rows = rows // group
    n_axis = ct.dims.index("N")
    align = p.values if ct.packed_dim == n_axis else 1
    cols = N if deep else _sampled_columns(N, rows.size, align)
    if cols < N:  # leading output columns only: a slice of each row, never a copy of the tensor
        keep = -(-cols // p.values) * p.words if ct.packed_dim == n_axis else cols
        words = words[(slice(None),) * n_axis + (slice(0, keep),)]
    if ct.packed_dim == k_axis:  # K is packed: read whole blocks that hold the rows
        blk = np.unique(rows // p.values)
        word_idx = (blk[:, None] * p.words + np.arange(p.words)[None, :]).reshape(-1)
        sub = words[(slice(None),) * k_axis + (word_idx,)]  # (np.take would first copy a sliced view whole)
        vals = unpack(sub, p, axis=k_axis)
        logical_rows = (blk[:, None] * p.values + np.arange(p.values)[None, :]).reshape(-1)
        pos = np.searchsorted(logical_rows, rows)
        vals = np.take(vals, pos, axis=k_axis)
    else:
        sub = words[(slice(None),) * k_axis + (rows,)]
        vals = unpack(sub, p, axis=ct.packed_dim, length=cols) if ct.packed_dim is not None else sub
    codes = vals.T if ct.transposed else vals
    return codes, groups_of_rows


def order_findings(ckpt, module, fit: Fit, codes, rows_groups, err, stats) -> list[Finding]:
    """Per (group, column) the median code sits at the zero point when qweight and qzeros use the same field order.
    Compare the stored order of qzeros with every other order a spec defines at this width."""
    spec, b = fit.spec, fit.bits
    zt = spec.tensor("zeros")
    if zt.packed_dim is None:
        return []  # unpacked zeros have no field order to get wrong
    words, _ = read_tensor(ckpt, module, zt.name)
    base = spec.packing(b)
    orders = {base.order}
    for other in all_specs().values():
        if b in other.bits:
            op = other.packing(b)
            if (op.values, op.words) == (base.values, base.words):
                orders.add(op.order)
    n_g = shape_facts(spec, fit.K, fit.N, fit.G, b)[0]["n_g"]
    groups = np.unique(rows_groups)
    cols = codes.shape[1]
    medians = _group_medians(codes, rows_groups, groups, b)
    agreement = {}
    for order in orders:
        p = Packing(base.bits, base.values, base.words, order)
        z = _sampled_zero_fields(words, zt, p, groups, cols, n_g).astype(np.int64) - spec.zero_offset
        agreement[order] = float(np.mean(np.abs(medians - z) <= 1) * 100)
    stored = agreement[base.order]
    stats[module.prefix] = {"median_at_zero_pct": round(stored, 2), "groups_sampled": int(groups.size), "columns_sampled": int(cols)}
    best_order, best = max(agreement.items(), key=lambda kv: kv[1])
    if best_order != base.order and best >= stored + ORDER_MARGIN and len(np.unique(z)) > 1:
        err("order.zeros-vs-weights",
            f"qzeros and qweight disagree on the field order: the median code of a group sits at its zero point in {stored:.1f}% of cells "
            f"with qzeros read in the stored order {list(base.order)}, but {best:.1f}% with order {list(best_order)}",
            hint=f"one of the two tensors was packed in the wrong order (e.g. qzeros natural while qweight is AWQ-interleaved); "
                 f"repack qzeros in order {list(base.order)}", tensor=zt.name,
            stored_order_pct=round(stored, 2), best_order=list(best_order), best_order_pct=round(best, 2))
    return []


def order_sample(modules: dict[str, QuantModule]) -> set[str]:
    """Prefixes of the modules whose pack order the default check samples: all of them, except that of more than
    SAMPLE_MODULES_PER_SHAPE modules with one layout and shape, that many evenly spread ones."""
    by_shape: dict[tuple, list[str]] = {}
    for m in modules.values():
        if m.chosen is not None:
            f = m.chosen
            by_shape.setdefault((f.spec.name, f.bits, f.K, f.N, f.G), []).append(m.prefix)
    out: set[str] = set()
    for prefixes in by_shape.values():
        if len(prefixes) > SAMPLE_MODULES_PER_SHAPE:
            prefixes = [prefixes[i] for i in np.unique(np.linspace(0, len(prefixes) - 1, SAMPLE_MODULES_PER_SHAPE).astype(int))]
        out.update(prefixes)
    return out


def _sampled_columns(N: int, rows: int, align: int) -> int:
    """How many leading output columns of `rows` sampled rows fit in SAMPLE_CODES (whole packed words, >= one word)."""
    if rows * N <= SAMPLE_CODES:
        return N
    return min(N, max(align, SAMPLE_CODES // max(rows, 1) // align * align))


def _group_medians(codes: np.ndarray, rows_groups: np.ndarray, groups: np.ndarray, bits: int) -> np.ndarray:
    """np.median over the rows of each (group, column) cell, exactly, from one histogram of the small integer codes
    (a bincount instead of a partition per group: the two middle values are where the cumulative count crosses)."""
    levels = max(1 << bits, int(codes.max()) + 1 if codes.size else 1)
    cols = codes.shape[1]
    first_bin = np.searchsorted(groups, rows_groups).astype(np.intp) * (cols * levels)  # of each row's cell, column 0
    idx = first_bin[:, None] + np.arange(0, cols * levels, levels, dtype=np.intp)[None, :]  # one index array, added to in place
    idx += codes
    hist = np.bincount(idx.ravel(), minlength=groups.size * cols * levels).reshape(groups.size, cols, levels)
    cum = np.cumsum(hist, axis=2)
    n = cum[:, :, -1:]  # rows in the cell
    lo = np.count_nonzero(cum < (n + 1) // 2, axis=2)  # value at sorted index (n - 1) // 2
    hi = np.count_nonzero(cum < n // 2 + 1, axis=2)  # value at sorted index n // 2
    return (lo + hi) / 2


def _sampled_zero_fields(words: np.ndarray, zt, p: Packing, groups: np.ndarray, cols: int, n_g: int) -> np.ndarray:
    """Zero fields [groups, cols] read in field order `p`, unpacking only the sampled groups over the leading columns."""
    w = np.asarray(words)
    g_axis, n_axis = zt.dims.index("n_g"), zt.dims.index("N")
    if zt.packed_dim == n_axis:
        w = np.take(w, groups, axis=g_axis)
        w = w[(slice(None),) * n_axis + (slice(0, -(-cols // p.values) * p.words),)]
        z = unpack(w, p, axis=n_axis, length=cols)
        return z.T if zt.transposed else z
    z = unpack(w, p, axis=zt.packed_dim, length=n_g)
    return (z.T if zt.transposed else z)[groups, :cols]
