"""`awqfmt convert --verify`: decode SRC and DST module by module and compare what must be identical."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from . import dtypes
from .checkpoint import Checkpoint, open_checkpoint
from .convert_engine import ModuleJob, Options, Reader, SrcTensor, Target, decode_small, dequantize_nk, module_jobs, src_tensor
from .findings import Finding, error
from .logical import LogicalModule


def compare_checkpoints(src: str | Path, dst: str | Path, target: Target, opts: Options) -> list[Finding]:
    """Decode SRC and DST module by module and compare codes, zeros, scales, g_idx and bias (for dense targets
    the weights against SRC dequantized the same way), plus every unquantized tensor byte for byte.
    Returns an error finding per difference."""
    out: list[Finding] = []
    s_ckpt, d_ckpt = open_checkpoint(src), open_checkpoint(dst)
    reader = Reader()
    try:
        s_mods, s_plain = module_jobs(s_ckpt)
        d_mods, _ = module_jobs(d_ckpt)
        for prefix, sm in s_mods.items():
            if sm.chosen is None:
                continue
            s_job = ModuleJob(prefix, sm.chosen.spec.name, sm.chosen.bits, sm.chosen.G,
                              {k: src_tensor(s_ckpt, v) for k, v in sm.tensors.items()})
            _, a = decode_small(s_job, reader.read, opts.v1_all_ones, with_codes=True)
            if target.dense:
                out += _compare_dense(prefix, a, d_ckpt, reader, target)
                continue
            dm = d_mods.get(prefix)
            if dm is None or dm.chosen is None:
                out.append(error("verify.missing-module", "module is in SRC but not readable in DST", module=prefix))
                continue
            d_job = ModuleJob(prefix, dm.chosen.spec.name, dm.chosen.bits, dm.chosen.G,
                              {k: src_tensor(d_ckpt, v) for k, v in dm.tensors.items()})
            _, b = decode_small(d_job, reader.read, "kernel", with_codes=True)
            out += _compare_modules(prefix, a, b)
        for name in s_plain:
            if name not in d_ckpt.locations:
                out.append(error("verify.missing-tensor", "unquantized tensor of SRC is missing in DST", tensor=name))
                continue
            x, y = src_tensor(s_ckpt, name), src_tensor(d_ckpt, name)
            same = (x.dtype, x.shape) == (y.dtype, y.shape) and all(
                np.array_equal(p, q) for p, q in zip(reader.chunks(x, 8 << 20), _copy_chunks(reader, y, 8 << 20)))
            if not same:
                out.append(error("verify.mismatch", "unquantized tensor differs between SRC and DST", tensor=name))
    finally:
        reader.close()
        s_ckpt.close()
        d_ckpt.close()
    return out


def _copy_chunks(reader: Reader, t: SrcTensor, size: int) -> Iterator[np.ndarray]:
    for c in reader.chunks(t, size):  # chunks() reuses one buffer: copy so two streams can be compared
        yield c.copy()


def _mismatch(prefix: str, what: str, a: np.ndarray, b: np.ndarray) -> Finding | None:
    if a.shape != b.shape:
        return error("verify.mismatch", f"{what}: shape {list(a.shape)} in SRC, {list(b.shape)} in DST", module=prefix)
    diff = int(np.count_nonzero(a != b))
    if diff:
        return error("verify.mismatch", f"{what} differ at {diff} of {a.size} positions", module=prefix, evidence={"count": diff})
    return None


def _compare_modules(prefix: str, a: LogicalModule, b: LogicalModule) -> list[Finding]:
    found = [
        _mismatch(prefix, "codes", a.codes, b.codes),
        _mismatch(prefix, "zero points", a.zeros, b.zeros),
        _mismatch(prefix, "g_idx", a.effective_g_idx(), b.effective_g_idx()),
    ]
    if a.scale_dtype == b.scale_dtype:
        found.append(_mismatch(prefix, "scales (bits)", a.scales.view(np.uint8), b.scales.view(np.uint8)))
    else:
        found.append(_mismatch(prefix, "scales (values)", dtypes.to_float32(a.scales, a.scale_dtype).view(np.uint32),
                               dtypes.to_float32(b.scales, b.scale_dtype).view(np.uint32)))
    if a.bits != b.bits or a.group_size != b.group_size:
        found.append(error("verify.mismatch", f"bits/group_size {a.bits}/{a.group_size} in SRC, {b.bits}/{b.group_size} in DST", module=prefix))
    if ("bias" in a.extras) != ("bias" in b.extras):
        found.append(error("verify.mismatch", "bias present on one side only", module=prefix))
    elif "bias" in a.extras:
        found.append(_mismatch(prefix, "bias", a.extras["bias"][0].view(np.uint8), b.extras["bias"][0].view(np.uint8)))
    return [f for f in found if f is not None]


def _compare_dense(prefix: str, a: LogicalModule, d_ckpt: Checkpoint, reader: Reader, target: Target) -> list[Finding]:
    name = f"{prefix}.weight"
    if name not in d_ckpt.locations:
        return [error("verify.missing-tensor", "dense weight missing in DST", module=prefix, tensor=name)]
    got = reader.read(src_tensor(d_ckpt, name))
    want = dequantize_nk(a, target.dense_dtype)
    f = _mismatch(prefix, f"dequantized weights ({target.dense_dtype})", want.view(np.uint16), got.view(np.uint16))
    return [f] if f else []
