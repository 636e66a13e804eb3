"""Data behind `awqfmt layout`: the bit layout of a packed word for a spec, and one real word of a checkpoint.

Functions return plain rows; `render_*` turn them into rich tables. Everything is derived from the spec's
`Packing` (field width, block, order), so a new layout spec shows up here without code changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import dtypes
from .checkpoint import open_checkpoint
from .logical import decode
from .modules import fit_modules, group_modules
from .spec import LayoutSpec, Packing


@dataclass
class FieldRow:
    word: int
    bits: tuple[int, int]  # [lo, hi] inclusive, in the word (or the 96-bit block, for straddling fields)
    position: int  # field position counted from the LSB
    logical: int  # logical index inside the block
    note: str = ""


def field_rows(packing: Packing) -> list[FieldRow]:
    rows = []
    for pos, logical in enumerate(packing.order):
        lo = pos * packing.bits
        hi = lo + packing.bits - 1
        word, lo_in = divmod(lo, 32)
        hi_word, hi_in = divmod(hi, 32)
        note = f"straddles words {word}-{hi_word}" if hi_word != word else ""
        rows.append(FieldRow(word, (lo_in, hi_in if hi_word == word else hi_in + 32), pos, logical, note))
    return rows


def fp16x2_pairs(packing: Packing) -> list[tuple[int, int, int, int]] | None:
    """For 8 x 4-bit fields per word: the fast int4 -> fp16 conversion `(w >> 8j') & 0x000F000F | 0x64006400` (with
    0x00F000F0 for the odd steps) puts field positions (j, j + 4) into the low and high half of one fp16x2 register.
    Returns (register, low position, high position, low logical, high logical) rows, or None for other widths."""
    if (packing.bits, packing.values, packing.words) != (4, 8, 1):
        return None
    return [(j, j, j + 4, packing.order[j], packing.order[j + 4]) for j in range(4)]


def render_format(spec: LayoutSpec, bits: int, console: Console) -> None:
    p = spec.packing(bits)
    if not spec.packed:
        console.print(f"{spec.name}: not packed, one {bits}-bit value per element (no words, no field order)")
    else:
        title = escape(f"{spec.name}: {bits}-bit fields, {p.values} per {p.words} word(s)" + ("" if p.natural else f", order {list(p.order)}"))
        table = Table(title=title)
        for col in ("word", "bits", "field (from LSB)", "holds logical index", "note"):
            table.add_column(col)
        for r in field_rows(p):
            table.add_row(str(r.word), f"{r.bits[0]}-{r.bits[1]}", str(r.position), str(r.logical), r.note)
        console.print(table)
    pairs = fp16x2_pairs(p) if spec.packed else None
    if pairs:
        t2 = Table(title="fp16x2 registers of the lop3 / 0x64006400 conversion (one lop3 per register)")
        for col in ("register", "nibbles (low, high)", "logical columns", "adjacent?"):
            t2.add_column(col)
        for reg, lo, hi, llo, lhi in pairs:
            t2.add_row(str(reg), f"{lo}, {hi}", f"{llo}, {lhi}", "yes" if lhi == llo + 1 else "no: needs a prmt/shift to pair up")
        console.print(t2)
    tensors = Table(title=f"{spec.name} tensors per quantized Linear (K = in_features, N = out_features, G = group_size)")
    for col in ("tensor", "role", "shape", "dtypes", "packed along"):
        tensors.add_column(col)
    for t in spec.tensors:
        along = t.dims[t.packed_dim] if t.packed_dim is not None else "-"
        tensors.add_row(t.name + (" (optional)" if t.optional else ""), t.role, escape("[" + ", ".join(map(str, t.shape)) + "]"),
                        ", ".join(t.dtypes), along)
    console.print(tensors)
    zp = spec.raw["zero_point"]
    console.print(f"zero point stored as: {zp['stored']}" + ("; absent when symmetric" if zp["when_symmetric"] == "absent" else ""))


class LayoutError(Exception):
    """A bad --tensor / --row / --col request: a usage error."""


class DamagedTensor(Exception):
    """The tensor exists but its header entry or data is defective: a finding about the file (exit 1)."""


def word_report(path, tensor: str, row: int, col: int) -> dict:
    """Decode one stored word of a checkpoint: fields in file order, their logical (k, n), zero, scale, value."""
    ckpt = open_checkpoint(path)
    try:
        damaged = [f for f in ckpt.all_findings() if f.tensor == tensor and f.severity.value == "error"]
        if damaged:
            raise DamagedTensor(f"{damaged[0].file}: tensor {tensor!r} cannot be read ({damaged[0].code}: {damaged[0].message}); "
                                "run `awqfmt check` for every finding")
        if tensor not in ckpt.locations:
            close = [n for n in ckpt.locations if tensor in n][:5]
            raise LayoutError(f"no tensor {tensor!r} in {path}" + (f"; did you mean {', '.join(close)}?" if close else ""))
        modules, _ = group_modules(ckpt)
        prefix, _, short = tensor.rpartition(".")
        module = modules.get(prefix)
        if module is None:
            raise LayoutError(f"{tensor!r} is not part of a quantized module")
        fit_modules(ckpt, {prefix: module})
        fit = module.chosen
        if fit is None:
            raise LayoutError(f"module {prefix!r} fits no layout spec; run `awqfmt check` for details")
        spec = fit.spec
        t = next((x for x in spec.tensors if x.name == short), None)
        if t is None or t.packed_dim is None:
            raise LayoutError(f"{short!r} is not a packed tensor of layout {spec.name} (packed: "
                              + ", ".join(x.name for x in spec.tensors if x.packed_dim is not None) + ")")
        stored = ckpt.array(tensor)
        if not (0 <= row < stored.shape[0] and 0 <= col < stored.shape[1]):
            raise LayoutError(f"--row/--col ({row}, {col}) outside {short} of shape {list(stored.shape)}")
        p = spec.packing(fit.bits)
        arrays = {k: ckpt.array(v) for k, v in module.tensors.items()}
        logical = decode(spec, arrays, {k: ckpt.entry(v).dtype for k, v in module.tensors.items()}, fit.bits, fit.G)
        idx = [row, col]
        block = idx[t.packed_dim] // p.words
        word_in_block = idx[t.packed_dim] % p.words
        words = []
        for w in range(p.words):
            j = list(idx)
            j[t.packed_dim] = block * p.words + w
            words.append(int(np.uint32(stored[tuple(j)].view(np.uint32))))
        fields = []
        g_idx = logical.effective_g_idx()
        scales32 = dtypes.to_float32(logical.scales, logical.scale_dtype)
        for r in field_rows(p):
            if r.word != word_in_block and not r.note:
                continue
            along = block * p.values + r.logical  # logical index along the packed dim
            coord = list(idx)
            coord[t.packed_dim] = along
            named = dict(zip(t.dims, coord))
            entry = {"position": r.position, "bits": list(r.bits), "logical_index": along, "coord": named}
            if t.role == "codes":
                k, n = named["K"], named["N"]
                if k >= logical.K or n >= logical.N:
                    entry["padding"] = True
                else:
                    g = int(g_idx[k])
                    entry.update(value=int(logical.codes[k, n]), group=g, zero=int(logical.zeros[g, n]),
                                 scale=float(scales32[g, n]),
                                 weight=float((int(logical.codes[k, n]) - int(logical.zeros[g, n])) * scales32[g, n]))
            else:
                g, n = named["n_g"], named["N"]
                if n >= logical.N:
                    entry["padding"] = True
                else:
                    entry.update(value=int(logical.zeros[g, n]), stored=int(logical.zeros[g, n]) + spec.zero_offset,
                                 group=g, scale=float(scales32[g, n]))
            fields.append(entry)
        return {"path": str(path), "tensor": tensor, "module": prefix, "layout": spec.name, "bits": fit.bits,
                "row": row, "col": col, "words": words, "word_in_block": word_in_block, "order": list(p.order),
                "fields": fields}
    finally:
        ckpt.close()


def _binary_by_field(rep: dict) -> str:
    """The words MSB first, a space between fields, so each group of bits lines up with one field."""
    width = rep["bits"]
    out = []
    for w in reversed(rep["words"]):
        bits = format(w, "032b")
        cuts = [i for i in range(32, 0, -width)]
        groups = [bits[max(0, 32 - c): 32 - c + width] for c in cuts]
        out.append(" ".join(g for g in groups if g) if 32 % width == 0 else bits)
    return " | ".join(out) + "  (MSB first; first group = highest field)"


def render_word(rep: dict, console: Console) -> None:
    words = " ".join(f"{w:#010x}" for w in rep["words"])
    console.print(escape(f"{rep['tensor']} [{rep['row']}, {rep['col']}]  layout {rep['layout']}, {rep['bits']}-bit, "
                         f"field order {rep['order']}"), style="bold")
    console.print(f"word(s): {words}")
    console.print("binary : " + _binary_by_field(rep))
    for title, key in (("as stored (field 0 = least significant)", "position"), ("in natural (logical) order", "logical_index")):
        table = Table(title=title)
        for col in ("field", "bits", "logical index", "value", "stored", "group", "zero", "scale", "weight"):
            table.add_column(col)
        for f in sorted(rep["fields"], key=lambda f: f[key]):
            coord = ", ".join(f"{k}={v}" for k, v in f["coord"].items())
            if f.get("padding"):
                table.add_row(str(f["position"]), f"{f['bits'][0]}-{f['bits'][1]}", coord, "padding", "", "", "", "", "")
                continue
            table.add_row(str(f["position"]), f"{f['bits'][0]}-{f['bits'][1]}", coord, str(f["value"]), str(f.get("stored", f["value"])),
                          str(f["group"]), str(f.get("zero", "")), f"{f['scale']:.6g}", f"{f['weight']:.6g}" if "weight" in f else "")
        console.print(table)
