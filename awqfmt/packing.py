"""Pack and unpack b-bit fields in int32 words, for any spec'd `Packing`, along either axis.

A `Packing` says: `values` fields of `bits` bits sit LSB-first in a block of `words` int32 words, the i-th field
holding logical index `order[i]` of the block. b in {2,4,8}: one word per block. GPTQ 3-bit: 32 fields in 3 words,
a field may straddle two words. compressed-tensors 3-bit: 10 fields per word, 2 bits unused.

Vectorised over all blocks; the only Python loop is over the <= 32 field positions of one block.
"""

from __future__ import annotations

import numpy as np

from .spec import Packing


def unpack(words: np.ndarray, packing: Packing, axis: int, length: int | None = None) -> np.ndarray:
    """int32 words -> uint8 fields, expanded along `axis` (trimmed to `length` when padding was added)."""
    w = np.moveaxis(np.asarray(words), axis, -1).view(np.uint32) if np.asarray(words).dtype.itemsize == 4 \
        else np.moveaxis(np.asarray(words).astype(np.uint32), axis, -1)
    n_words = w.shape[-1]
    if n_words % packing.words:
        raise ValueError(f"{n_words} words along the packed axis is not a whole number of {packing.words}-word blocks")
    n_blocks = n_words // packing.words
    blocks = w.reshape(*w.shape[:-1], n_blocks, packing.words)
    out = np.empty((*w.shape[:-1], n_blocks, packing.values), dtype=np.uint8)
    mask = np.uint32((1 << packing.bits) - 1)
    for pos, logical in enumerate(packing.order):
        bit = pos * packing.bits
        wi, sh = divmod(bit, 32)
        field = blocks[..., wi] >> np.uint32(sh)
        if sh + packing.bits > 32:  # straddles into the next word (GPTQ 3-bit)
            field = field | (blocks[..., wi + 1] << np.uint32(32 - sh))
        out[..., logical] = field & mask
    out = out.reshape(*w.shape[:-1], n_blocks * packing.values)
    if length is not None:
        out = out[..., :length]
    return np.moveaxis(out, -1, axis)


def pack(values: np.ndarray, packing: Packing, axis: int) -> np.ndarray:
    """uint8 fields -> int32 words along `axis`, zero-padding the axis to whole blocks."""
    v = np.moveaxis(np.asarray(values), axis, -1)
    if v.size and int(v.max()) >> packing.bits:
        raise ValueError(f"a value does not fit in {packing.bits} bits (max {int(v.max())})")
    n = v.shape[-1]
    n_blocks = -(-n // packing.values)
    if n_blocks * packing.values != n:
        pad = np.zeros((*v.shape[:-1], n_blocks * packing.values - n), dtype=v.dtype)
        v = np.concatenate([v, pad], axis=-1)
    v = v.reshape(*v.shape[:-1], n_blocks, packing.values)
    blocks = np.zeros((*v.shape[:-2], n_blocks, packing.words), dtype=np.uint32)
    for pos, logical in enumerate(packing.order):
        field = v[..., logical].astype(np.uint32)
        bit = pos * packing.bits
        wi, sh = divmod(bit, 32)
        blocks[..., wi] |= field << np.uint32(sh)
        if sh + packing.bits > 32:
            blocks[..., wi + 1] |= field >> np.uint32(32 - sh)
    out = blocks.reshape(*v.shape[:-2], n_blocks * packing.words).view(np.int32)
    return np.ascontiguousarray(np.moveaxis(out, -1, axis))
