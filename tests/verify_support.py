"""Helpers for the verify tests: re-encode a real checkpoint into another layout (through awqfmt.logical, the
same route `awqfmt convert` takes), optionally damaged on purpose, and write it as a checkpoint directory."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Callable

import numpy as np

from awqfmt import dtypes
from awqfmt.checkpoint import open_checkpoint
from awqfmt.logical import LogicalModule, decode, encode
from awqfmt.modules import fit_modules, group_modules
from awqfmt.packing import pack
from awqfmt.spec import LayoutSpec, Packing, get_spec


def write_safetensors(path: Path, tensors: dict[str, tuple[np.ndarray, str]]) -> None:
    """A plain safetensors writer taking (array, dtype name): BF16 arrays are raw uint16 words."""
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        arr, dt = tensors[name]
        data = np.ascontiguousarray(arr).astype(dtypes.STORAGE[dt], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(np.shape(arr)), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for b in blobs:
            fh.write(b)


def _fill(template, values: dict):
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values[template[1:-1]]
    return template


def quantization_config(spec: LayoutSpec, bits: int, group_size: int, sym: bool, act_order: bool) -> dict:
    values = {"bits": bits, "group_size": group_size, "zero_point": not sym, "sym": sym, "desc_act": act_order,
              "modules_to_not_convert": None, "strategy": "group" if group_size != -1 else "channel",
              "group_size_or_null": group_size if group_size != -1 else None, "actorder": "group" if act_order else None}
    return _fill(spec.config["write"], values)


def logical_modules(src: Path) -> dict[str, tuple[LogicalModule, dict]]:
    """Every quantized module of `src` decoded to logical form, with its non-quantized extras."""
    ckpt = open_checkpoint(src)
    modules, _ = group_modules(ckpt)
    fit_modules(ckpt, modules)
    out = {}
    for prefix, m in modules.items():
        fit = m.chosen
        tensors = {k: np.array(ckpt.array(v)) for k, v in m.tensors.items()}
        names = {k: ckpt.entry(v).dtype for k, v in m.tensors.items()}
        out[prefix] = decode(fit.spec, tensors, names, fit.bits, fit.G)
    ckpt.close()
    return out


Damage = Callable[[str, LogicalModule, dict], None]


def write_layout(src: Path, dst: Path, layout: str, *, damage: Damage | None = None, drop: tuple[str, ...] = (),
                 scale_dtype: str | None = None, dense: str | None = None) -> Path:
    """Re-encode every module of `src` into `layout` (or dense `<module>.weight` [N, K] of dtype `dense`)
    and write DST/model.safetensors + config.json. `damage(name, module, encoded)` may edit encoded tensors."""
    dst.mkdir(parents=True, exist_ok=True)
    spec = get_spec(layout) if dense is None else None
    mods = logical_modules(src)
    tensors: dict[str, tuple[np.ndarray, str]] = {}
    for name, module in mods.items():
        if name in drop:
            continue
        if scale_dtype is not None:
            module.scales = dtypes.from_float32(dtypes.to_float32(module.scales, module.scale_dtype), scale_dtype)
            module.scale_dtype = scale_dtype
        if dense is not None:
            w = module.dequantize(np.float64).T.astype(np.float32)
            tensors[f"{name}.weight"] = (dtypes.from_float32(w, dense), dense)
            continue
        encoded = encode(spec, module)
        if damage is not None:
            damage(name, module, encoded)
        for short, (arr, dt) in encoded.items():
            tensors[f"{name}.{short}"] = (arr, dt)
    write_safetensors(dst / "model.safetensors", tensors)
    first = next(iter(mods.values()))
    cfg = {"architectures": ["Test"]}
    if spec is not None:
        sym = all(m.is_symmetric() for m in mods.values())
        cfg["quantization_config"] = quantization_config(spec, first.bits, first.group_size, sym,
                                                         any(m.has_act_order() for m in mods.values()))
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def repack_in_order(layout: str, role: str, order: tuple[int, ...]) -> Damage:
    """A damage that re-packs one role's tensor (codes or zeros) of the module in another field order."""
    spec = get_spec(layout)
    t = spec.tensor(role)

    def damage(name: str, module: LogicalModule, encoded: dict) -> None:
        base = spec.packing(module.bits)
        logical = module.codes if role == "codes" else module.zeros.astype(np.int32) + spec.zero_offset
        stored = logical.T if t.transposed else logical
        arr = pack(stored.astype(np.uint8), Packing(base.bits, base.values, base.words, order), axis=t.packed_dim)
        encoded[t.name] = (arr, "I32")

    return damage


def only(module_name: str, damage: Damage) -> Damage:
    def wrapped(name, module, encoded):
        if name == module_name:
            damage(name, module, encoded)
    return wrapped
