"""The "frag" device layout: a module's 4-bit weights rearranged into mma fragment order for the M <= 16
tensor-core kernel (kernels/w4a16_frag.cu, whose header defines the layout; this module builds it).

It is a copy made on the GPU when a module is prepared, never a checkpoint format: the source words are
decoded with the layout's own spec (field order and packed axis from specs/*.json), so any layout the kernels
read (AWQ-interleaved, natural, GPTQ v1/v2) arrives at the same fragment words. Every function takes the array
module `xp` (numpy or cupy) so that the CPU tests check exactly the code the GPU runs.

    qf [N/64][K/64][4][32][4] int32: word w of lane (r, c) at step s of 64-k block kb, nibble e = 4h + 2b + u:
        W[k = 64 kb + 32(s // 2) + 8c + 4(s % 2) + 2b + h][n = 64 T + 16w + 8u + r]
    zf [N/64][n_g][8 r][8 j] uint8, j = 2w + u: zero point of column 64 T + 16w + 8u + r
    sf [N/64][n_g][8 r][8 j] 16-bit scale bits, the same columns
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..spec import get_spec

TILE_N = 64  # columns per warp tile
BLOCK_K = 64  # k per fragment block (4 mma steps)


class FragmentUnsupported(ValueError):
    """The module's shape or zero points do not fit the frag layout (the other kernels still cover it)."""


def fragment_supported(K: int, N: int, group_size: int) -> str | None:
    """None when (K, N, group size) fit the frag layout, else the reason."""
    G = K if group_size in (-1, 0, None) or group_size >= K else int(group_size)
    if K % BLOCK_K or N % TILE_N:
        return f"K={K} and N={N} must be multiples of {BLOCK_K} and {TILE_N}"
    if G != K and G % BLOCK_K:
        return f"group size {G} must be a multiple of {BLOCK_K} (or one group)"
    return None


def unpack_fields(xp, words, order, axis: int):
    """4-bit fields of int32 words -> uint8 values, expanded along `axis`; field i (from the LSB) holds
    position order[i] of its word's 8 (the spec's field order)."""
    w = xp.moveaxis(words.view(xp.uint32), axis, -1)
    out = xp.empty((*w.shape, 8), dtype=xp.uint8)
    for pos, logical in enumerate(order):
        out[..., logical] = (w >> np.uint32(4 * pos)) & np.uint32(0xF)
    return xp.moveaxis(out.reshape(*w.shape[:-1], w.shape[-1] * 8), -1, axis)


def logical_codes(xp, layout: str, qweight, qzeros, zero_offset: int) -> tuple[Any, Any]:
    """(q [K, N] uint8, z [n_g, N] int16) of a module stored in `layout` (a spec name), zero points with the
    layout's offset undone (stored = z + zero_offset)."""
    spec = get_spec(layout)
    order = spec.packing(4).order
    q = unpack_fields(xp, qweight, order, spec.tensor("codes").packed_dim)
    z = unpack_fields(xp, qzeros, order, spec.tensor("zeros").packed_dim).astype(xp.int16) - np.int16(zero_offset)
    return q, z


def to_fragment(xp, q, z, scale_bits) -> tuple[Any, Any, Any]:
    """Logical codes q [K, N], zero points z [n_g, N] (0..255) and 16-bit scale bits [n_g, N] -> (qf, zf, sf)."""
    K, N = q.shape
    if int(z.min()) < 0 or int(z.max()) > 255:
        raise FragmentUnsupported("zero points outside 0..255 do not fit the frag layout's byte per zero")
    T, KB = N // TILE_N, K // BLOCK_K
    # k = 64 kb + 32 s1 + 8c + 4 s0 + 2b + h (step s = 2 s1 + s0), n = 64 T + 16w + 8u + r;
    # nibble e = 4h + 2b + u of word w, lane 4r + c
    nib = q.reshape(KB, 2, 4, 2, 2, 2, T, 4, 2, 8).transpose(6, 0, 1, 3, 9, 2, 7, 5, 4, 8).reshape(T, KB, 4, 32, 4, 8)
    words = xp.zeros((T, KB, 4, 32, 4), dtype=xp.uint32)
    for e in range(8):
        words |= nib[..., e].astype(xp.uint32) << np.uint32(4 * e)
    n_g = z.shape[0]
    # zeros and scales of column 64 T + 16w + 8u + r at [T][g][r][2w + u]
    zf = xp.ascontiguousarray(z.astype(xp.uint8).reshape(n_g, T, 4, 2, 8).transpose(1, 0, 4, 2, 3)).reshape(T, n_g, 8, 8)
    sf = xp.ascontiguousarray(scale_bits.reshape(n_g, T, 4, 2, 8).transpose(1, 0, 4, 2, 3)).reshape(T, n_g, 8, 8)
    return words.view(xp.int32), zf, sf


def from_fragment(xp, qf, zf, sf) -> tuple[Any, Any, Any]:
    """The inverse of to_fragment: (q [K, N] uint8, z [n_g, N] uint8, scale bits [n_g, N])."""
    T, KB = qf.shape[0], qf.shape[1]
    w = qf.view(xp.uint32)
    nib = xp.empty((*w.shape, 8), dtype=xp.uint8)
    for e in range(8):
        nib[..., e] = (w >> np.uint32(4 * e)) & np.uint32(0xF)
    q = nib.reshape(T, KB, 2, 2, 8, 4, 4, 2, 2, 2).transpose(1, 2, 5, 3, 8, 7, 0, 6, 9, 4).reshape(KB * 64, T * 64)
    n_g = zf.shape[1]
    z = zf.reshape(T, n_g, 8, 4, 2).transpose(1, 0, 3, 4, 2).reshape(n_g, T * 64)
    s = sf.reshape(T, n_g, 8, 4, 2).transpose(1, 0, 3, 4, 2).reshape(n_g, T * 64)
    return xp.ascontiguousarray(q), xp.ascontiguousarray(z), xp.ascontiguousarray(s)


def fragment_position(k: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """Where W[k, n] sits in qf: (T, kb, s, lane, w, e), from the kernel header's formula (for tests)."""
    kb, kr = np.divmod(k, 64)
    s1, kr = np.divmod(kr, 32)
    c, kr = np.divmod(kr, 8)
    s0, kr = np.divmod(kr, 4)
    b, h = np.divmod(kr, 2)
    s = 2 * s1 + s0
    T, nr = np.divmod(n, 64)
    w, nr = np.divmod(nr, 16)
    u, r = np.divmod(nr, 8)
    return T, kb, s, 4 * r + c, w, 4 * h + 2 * b + u
