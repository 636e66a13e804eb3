"""Word-level repacking between packed layouts, never expanding to one byte per value.

`packing.unpack` + `packing.pack` is the reference (the oracle); every function here produces int32 words that
are byte-identical to it, at close to memory speed, by moving whole bit fields with masks and shifts:

- `reorder_fields`: permute the fields inside each word (AWQ order <-> natural) with a short network of delta
  swaps, found once per pair of orders.
- `transpose_packed`: move the packing from one axis to the other (N-packed `[K, N/v]` <-> K-packed `[K/v, N]`,
  or straight into compressed-tensors' transposed `[N, K/v]`): every v x v block of fields is one v-word
  bit-matrix transpose done in log2(v) swap stages over whole word planes; field orders on either side cost
  nothing, they only decide which plane is read or written where.
- `transpose_words`: a word-array transpose (GPTQ qweight <-> compressed-tensors weight_packed, qzeros <->
  weight_zero_point), fused with a field reorder when the orders differ.
- `zero_offset`: add a constant to every field without carrying into the neighbour, counting fields that wrap;
  `all_fields_equal` tests for a constant field (symmetric zero points) on the packed words.
- `repack_tensor`: picks one of the above from two `TensorSpec`s (packed axis, dims, field order) and falls back
  to the oracle where no word-level path applies (3-bit blocks that straddle words, different field counts).

Large tensors are processed in tiles of a few hundred KiB so the temporaries stay in cache and the peak
memory is the output plus O(tile).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator

import numpy as np

from .packing import pack, unpack
from .spec import LayoutSpec, Packing, TensorSpec

# Words per tile: X (the tile) + half a tile of scratch + the streams in and out stay within a 1 MiB L2.
TILE_WORDS = 1 << 17
# A transposed copy writes this many consecutive words (one 64-byte cache line) into each destination row.
LINE_WORDS = 16
# What to do with a zero-point field that leaves [0, 2^b) when offset: refuse, or keep it modulo 2^b.
WRAP_MODES = ("raise", "mask")

__all__ = [
    "FieldWrapError", "reorder_fields", "transpose_packed", "transpose_words", "zero_offset", "all_fields_equal",
    "repack_tensor", "repack_route", "swap_network",
]


class FieldWrapError(ValueError):
    """Adding the zero offset would wrap `count` fields (e.g. a zero point of 0 into GPTQ v1, which stores z - 1)."""

    def __init__(self, count: int, delta: int, bits: int):
        direction = "below 0" if delta < 0 else f"above {(1 << bits) - 1}"
        super().__init__(f"{count} field(s) would go {direction} when adding {delta:+d} to {bits}-bit fields")
        self.count = count
        self.delta = delta
        self.bits = bits


# ---- small helpers ---------------------------------------------------------------------------------------

def _as_u32(words: np.ndarray) -> np.ndarray:
    """A uint32 view of int32/uint32 words (a converted copy for other integer dtypes)."""
    a = np.asarray(words)
    if a.dtype.itemsize == 4 and a.dtype.kind in "iu":
        return a.view(np.uint32)
    return a.astype(np.uint32)


def _spans(n: int, step: int) -> Iterator[tuple[int, int]]:
    step = max(1, step)
    for start in range(0, n, step):
        yield start, min(n, start + step)


def _view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """reshape that must not copy: the transposes below write through these views."""
    r = a.reshape(shape)
    if r.size and r.__array_interface__["data"][0] != a.__array_interface__["data"][0]:
        raise AssertionError("internal: reshape copied a strided view")  # pragma: no cover
    return r


def _field_mask(positions, bits: int) -> int:
    m = 0
    for p in positions:
        m |= ((1 << bits) - 1) << (p * bits)
    return m


def _single_word(p: Packing) -> bool:
    """Every field sits inside one word (b in {2,4,8}, compressed-tensors' 10-per-word 3-bit); not GPTQ 3-bit."""
    return p.words == 1 and p.values * p.bits <= 32


def _same_fields(a: Packing, b: Packing) -> bool:
    return a.bits == b.bits and a.values == b.values and a.words == b.words


def _check_packings(src: Packing, dst: Packing) -> None:
    if not (_same_fields(src, dst) and _single_word(src)):
        raise ValueError(f"no word-level path between {src} and {dst}; use packing.unpack + packing.pack")


# ---- per-word field permutation: a delta-swap network ----------------------------------------------------

@lru_cache(maxsize=None)
def _moves(v: int) -> tuple[tuple[int, int], ...]:
    """Every delta swap on v fields: (distance d, bitset of lower positions p, each swapped with p + d)."""
    out = []
    for d in range(1, v):
        for m in range(1, 1 << (v - d)):
            if m & (m >> d) == 0:  # a position may not be both the lower and the upper end of a swap
                out.append((d, m))
    return tuple(out)


def _apply_move(state: tuple[int, ...], move: tuple[int, int]) -> tuple[int, ...]:
    d, m = move
    s = list(state)
    p = 0
    while m >> p:
        if m >> p & 1:
            s[p], s[p + d] = s[p + d], s[p]
        p += 1
    return tuple(s)


# A level of the meet-in-the-middle search may grow to about this many states before giving up.
_SEARCH_BUDGET = 40_000


def _shortest_swaps(start: tuple[int, ...], goal: tuple[int, ...]) -> list[tuple[int, int]] | None:
    """A short sequence of delta swaps turning `start` into `goal`, or None if the search outgrows its budget.

    Breadth-first from both ends at once (a swap is its own inverse), so the first meeting is at most one swap
    longer than the shortest network; AWQ's order is found in two."""
    if start == goal:
        return []
    if len(start) > 16:  # 1-bit fields: the move set alone would be too large to enumerate
        return None
    moves = _moves(len(start))
    fwd, bwd = {start: ()}, {goal: ()}
    front_f, front_b = dict(fwd), dict(bwd)
    while True:
        grow_fwd = len(front_f) <= len(front_b)
        front, seen, other = (front_f, fwd, bwd) if grow_fwd else (front_b, bwd, fwd)
        if len(front) * len(moves) > _SEARCH_BUDGET * 8:
            return None
        nxt = {}
        for state, path in front.items():
            for mv in moves:
                s2 = _apply_move(state, mv)
                if s2 in seen or s2 in nxt:
                    continue
                nxt[s2] = path + (mv,)
                if s2 in other:
                    f, b = (nxt[s2], other[s2]) if grow_fwd else (other[s2], nxt[s2])
                    return list(f) + list(reversed(b))
        if not nxt:
            return None
        seen.update(nxt)
        if grow_fwd:
            front_f = nxt
        else:
            front_b = nxt


@lru_cache(maxsize=None)
def swap_network(src_order: tuple[int, ...], dst_order: tuple[int, ...], bits: int) -> tuple[tuple[int, int], ...]:
    """The delta swaps (shift in bits, uint32 mask of the lower bits) that turn src field order into dst's.

    Applied in order as `t = ((x >> s) ^ x) & m; x ^= t ^ (t << s)`. AWQ [0,2,4,6,1,3,5,7] <-> natural takes two.
    Empty when no short network exists; `reorder_fields` then moves the fields in groups of equal displacement.
    """
    path = _shortest_swaps(tuple(src_order), tuple(dst_order))
    if path is None:
        return ()
    return tuple((d * bits, _field_mask((p for p in range(len(src_order)) if m >> p & 1), bits)) for d, m in path)


@lru_cache(maxsize=None)
def _shift_groups(src_order: tuple[int, ...], dst_order: tuple[int, ...], bits: int) -> tuple[tuple[int, int], ...]:
    """Fallback for orders without a short network: (signed shift in bits, mask at the source) per displacement."""
    src_pos = {logical: p for p, logical in enumerate(src_order)}
    groups: dict[int, list[int]] = {}
    for q, logical in enumerate(dst_order):
        p = src_pos[logical]
        groups.setdefault(q - p, []).append(p)
    return tuple((d * bits, _field_mask(ps, bits)) for d, ps in sorted(groups.items()))


def _plan_reorder(src: Packing, dst: Packing):
    """('copy' | 'swaps' | 'groups', steps): the cheaper of a swap network (6 ops a stage) or shift groups (3)."""
    if src.order == dst.order:
        return "copy", ()
    net = swap_network(src.order, dst.order, src.bits)
    groups = _shift_groups(src.order, dst.order, src.bits)
    if net and 6 * len(net) <= 3 * len(groups):
        return "swaps", net
    return "groups", groups


def _reorder_block(x: np.ndarray, out: np.ndarray, plan, t: np.ndarray) -> None:
    """out = x with its fields permuted by `plan`; `t` is scratch of the same shape (all uint32, may be views)."""
    kind, steps = plan
    if kind == "copy":
        np.copyto(out, x)
        return
    if kind == "swaps":
        src = x
        for shift, mask in steps:
            s, m = np.uint32(shift), np.uint32(mask)
            np.right_shift(src, s, out=t)
            np.bitwise_xor(t, src, out=t)
            np.bitwise_and(t, m, out=t)
            np.bitwise_xor(src, t, out=out)
            np.left_shift(t, s, out=t)
            np.bitwise_xor(out, t, out=out)
            src = out
        return
    first = True
    for shift, mask in steps:
        np.bitwise_and(x, np.uint32(mask), out=t)
        if shift > 0:
            np.left_shift(t, np.uint32(shift), out=t)
        elif shift < 0:
            np.right_shift(t, np.uint32(-shift), out=t)
        if first:
            np.copyto(out, t)
            first = False
        else:
            np.bitwise_or(out, t, out=out)


def reorder_fields(words: np.ndarray, src: Packing, dst: Packing) -> np.ndarray:
    """Permute the fields inside every word from `src.order` to `dst.order` (same bits, one-word blocks).

    Any shape; returns a new C-contiguous int32 array of the same shape. Padding fields move with their
    logical index, so zero padding stays zero (`repack_tensor` clears non-zero padding to match the oracle).
    """
    _check_packings(src, dst)
    x = _as_u32(words)
    out = np.empty(x.shape, dtype=np.uint32)
    if x.size == 0:
        return out.view(np.int32)
    plan = _plan_reorder(src, dst)
    x2 = x.reshape(x.shape[0] if x.ndim > 1 else 1, -1) if x.ndim else x.reshape(1, 1)
    o2 = out.reshape(x2.shape)
    rows = max(1, TILE_WORDS // max(1, x2.shape[1]))
    scratch = np.empty(min(rows, x2.shape[0]) * x2.shape[1], dtype=np.uint32)
    for r0, r1 in _spans(x2.shape[0], rows):
        t = scratch[: (r1 - r0) * x2.shape[1]].reshape(r1 - r0, x2.shape[1])
        _reorder_block(x2[r0:r1], o2[r0:r1], plan, t)
    return out.view(np.int32)


# ---- v x v field-block transposes -------------------------------------------------------------------------

def _transpose_stages(X: np.ndarray, t: np.ndarray, bits: int) -> None:
    """In place: X[i] (v uint32 word planes, shape [v, L]) -> word j holds field j of every input word, i.e.
    field i of output word j = field j of input word i. log2(v) stages; each swaps the off-diagonal h x h field
    blocks of every 2h x 2h block: field p + h of words with bit h clear <-> field p of their partner i + h."""
    v, L = X.shape
    h = v // 2
    while h:
        s = np.uint32(h * bits)
        m = np.uint32(_field_mask((p for p in range(v) if not p & h), bits))
        Xr = X.reshape(v // (2 * h), 2, h, L)
        A, B = Xr[:, 0], Xr[:, 1]
        tt = t[: (v // 2) * L].reshape(v // (2 * h), h, L)
        np.right_shift(A, s, out=tt)
        np.bitwise_xor(tt, B, out=tt)
        np.bitwise_and(tt, m, out=tt)
        np.bitwise_xor(B, tt, out=B)
        np.left_shift(tt, s, out=tt)
        np.bitwise_xor(A, tt, out=A)
        h //= 2


def _transpose_block_grid(C3: np.ndarray, D3: np.ndarray, src: Packing, dst: Packing) -> None:
    """Field-transpose a grid of blocks.

    C3 [nu, v, npw]: block u's v source words (logical U index u*v + i) for each packed source word column.
    D3 [npw, v, nu]: for each source word column pw and logical P offset l = src.order[q], the output word of
    block u. Output field r must hold U offset dst.order[r], so plane r of the work tile is source row
    dst.order[r]; the network's output plane q carries the P offset at source field position q.
    """
    nu, v, npw = C3.shape
    bits = src.bits
    # The work tile's inner axis follows memory: gather and scatter stay unit-stride on at least one side.
    inner_p = C3.strides[2] <= C3.strides[0] or D3.strides[0] <= D3.strides[2]
    if abs(C3.strides[2]) <= abs(C3.strides[0]) and abs(D3.strides[2]) < abs(D3.strides[0]):
        # conflict (AWQ <-> compressed-tensors): every plane is written transposed. Tiles 16 blocks tall give
        # each destination row one whole cache line per plane, which numpy's strided copy handles best
        # (measured: 2x faster than transposing on the way in instead).
        inner_p = True
        tp = max(1, min(npw, TILE_WORDS // (v * LINE_WORDS)))
        tu = max(LINE_WORDS, TILE_WORDS // (v * tp) // LINE_WORDS * LINE_WORDS)  # narrow P: taller tiles
    elif inner_p:
        tp = max(1, min(npw, TILE_WORDS // v))
        tu = max(1, TILE_WORDS // (v * tp))
    else:
        tu = max(1, min(nu, TILE_WORDS // v))
        tp = max(1, TILE_WORDS // (v * tu))
    tile = np.empty(v * min(tu, nu) * min(tp, npw), dtype=np.uint32)
    scratch = np.empty(tile.size // 2 + 1, dtype=np.uint32)
    rows_in = tuple(dst.order)  # work plane r <- source word dst.order[r]
    cols_out = tuple(src.order)  # work plane q -> output P offset src.order[q]
    for u0, u1 in _spans(nu, tu):
        for p0, p1 in _spans(npw, tp):
            n_u, n_p = u1 - u0, p1 - p0
            L = n_u * n_p
            X = tile[: v * L].reshape(v, L)
            Xt = X.reshape(v, n_u, n_p) if inner_p else X.reshape(v, n_p, n_u)
            src_tile = C3[u0:u1, :, p0:p1]  # [n_u, v, n_p]
            src_planes = src_tile.transpose(1, 0, 2) if inner_p else src_tile.transpose(1, 2, 0)
            # one 2-D copy per plane: numpy runs these much faster than a single 3-D transposing copy
            for r, i in enumerate(rows_in):
                np.copyto(Xt[r], src_planes[i])
            _transpose_stages(X, scratch, bits)
            dst_tile = D3[p0:p1, :, u0:u1]  # [n_p, v, n_u]
            dst_planes = dst_tile.transpose(1, 2, 0) if inner_p else dst_tile.transpose(1, 0, 2)
            for q, l in enumerate(cols_out):
                np.copyto(dst_planes[l], Xt[q])


def transpose_packed(words: np.ndarray, src: Packing, dst: Packing, *, axis: int, length: int | None = None,
                     transpose: bool = False) -> np.ndarray:
    """Move the packing of a 2-D word array from one logical axis to the other.

    `words` holds a logical matrix M packed along `axis` with `src` (e.g. AWQ qweight: M = q[K, N], axis=1).
    Returns M packed along the other axis with `dst`, in M's orientation (AWQ -> GPTQ `[K/v, N]`), or in M.T's
    orientation when `transpose` (AWQ -> compressed-tensors `[N, K/v]`; compressed-tensors -> AWQ is
    `transpose_packed(wp, ct, awq, axis=1, transpose=True)`). `length` is M's size along `axis` when the source
    words carry padding fields (default: all of them); the other axis is zero-padded to whole `dst` blocks.
    Equals `pack(unpack(words, src, axis, length), dst, 1 - axis)` (transposed when `transpose`).
    """
    _check_packings(src, dst)
    if src.values * src.bits != 32:
        raise ValueError(f"a field-block transpose needs fields that fill the word exactly, not {src}")
    x = _as_u32(words)
    if x.ndim != 2 or axis not in (0, 1, -1, -2):
        raise ValueError("transpose_packed works on 2-D word arrays, axis 0 or 1")
    axis %= 2
    v = src.values
    C = x if axis == 1 else x.T  # canonical [U, Pw]: rows unpacked, columns packed
    U, Pw = C.shape
    P = Pw * v if length is None else int(length)
    if not (Pw - 1) * v < P <= Pw * v and not (P == 0 and Pw == 0):
        raise ValueError(f"length {P} does not match {Pw} packed words of {v} fields")
    Uw = dst.packed_len(U)
    # Output canonical D [P, Uw]; stored as D itself or as D.T. Allocate whole blocks of P, trim at the end.
    out_is_D = (axis == 1) == transpose
    out_full = np.empty((Pw * v, Uw) if out_is_D else (Uw, Pw * v), dtype=np.uint32)
    D = out_full if out_is_D else out_full.T
    if U and Pw:
        D3 = _view(D, (Pw, v, Uw))
        n_full = U // v
        if n_full:
            C3 = _view(C[: n_full * v], (n_full, v, Pw))
            _transpose_block_grid(C3, D3[:, :, :n_full], src, dst)
        if U % v:  # the last, partial block of rows: zero padding, as `pack` writes
            tail = np.zeros((1, v, Pw), dtype=np.uint32)
            tail[0, : U % v] = C[n_full * v:]
            _transpose_block_grid(tail, D3[:, :, n_full:], src, dst)
    out = out_full[:P] if out_is_D else out_full[:, :P]
    return np.ascontiguousarray(out).view(np.int32)


# ---- word-array transposes (same packed axis, swapped dims) ----------------------------------------------

def transpose_words(words: np.ndarray, src: Packing | None = None, dst: Packing | None = None) -> np.ndarray:
    """`words.T` as a new C-contiguous int32 array, with the fields of every word reordered from src to dst on
    the way (GPTQ qweight <-> compressed-tensors weight_packed; GPTQ/AWQ qzeros <-> weight_zero_point).
    Tiled: a plain numpy transposed copy of a large array runs at a fraction of memory speed."""
    x = _as_u32(words)
    if x.ndim != 2:
        raise ValueError("transpose_words works on 2-D word arrays")
    plan = ("copy", ())
    if src is not None and dst is not None:
        _check_packings(src, dst)
        plan = _plan_reorder(src, dst)
    R, Ccols = x.shape
    out = np.empty((Ccols, R), dtype=np.uint32)
    if x.size == 0:
        return out.view(np.int32)
    # Bands of 16 source rows: each destination row receives one cache line per band, which is what numpy's
    # element-wise strided copy handles best (2-2.5 GB/s here; a whole-array .T copy runs at 0.7).
    tr = min(R, LINE_WORDS)
    tc = min(Ccols, max(1, TILE_WORDS // tr))
    buf = np.empty(tr * tc, dtype=np.uint32) if plan[0] != "copy" else None
    scratch = np.empty(tr * tc, dtype=np.uint32) if plan[0] != "copy" else None
    for c0, c1 in _spans(Ccols, tc):
        for r0, r1 in _spans(R, tr):
            src = x[r0:r1, c0:c1]
            if plan[0] != "copy":  # reorder the band in cache, then transpose it out
                n = src.size
                b = buf[:n].reshape(src.shape)
                _reorder_block(src, b, plan, scratch[:n].reshape(src.shape))
                src = b
            np.copyto(out[c0:c1, r0:r1], src.T)
    return out.view(np.int32)


# ---- zero-point offsets without carries -------------------------------------------------------------------

def _bitwise_count_sum(a: np.ndarray) -> int:
    if hasattr(np, "bitwise_count"):
        return int(np.bitwise_count(a).sum(dtype=np.int64))
    return int(np.unpackbits(np.ascontiguousarray(a).view(np.uint8)).sum(dtype=np.int64))  # numpy < 2.0


def _bit_of_every_field(v: int, bits: int, bit: int) -> int:
    return sum(1 << (p * bits + bit) for p in range(v))


def _add_fields(x: np.ndarray, out: np.ndarray, packing: Packing, d: int, counted_fields: int) -> np.ndarray:
    """out = x + d in every field, modulo 2^b per field; returns the high-bit carry-out of each counted field."""
    b, v = packing.bits, packing.values
    high = np.uint32(_bit_of_every_field(v, b, b - 1) & counted_fields)
    all_high = np.uint32(_bit_of_every_field(v, b, b - 1))
    low = np.uint32(_field_mask(range(v), b) & ~int(all_high))
    D = np.uint32(sum(d << (p * b) for p in range(v)))
    # the low b-1 bits of a field add normally (their carry lands in the cleared high bit); high bits add by xor
    np.bitwise_and(x, low, out=out)
    out += D & low
    out ^= (x ^ D) & all_high
    # carry out of a field's high bit = (x & D) | ((x | D) & ~sum)
    return ((x & D) | ((x | D) & ~out)) & high


def zero_offset(words: np.ndarray, bits: int | Packing, delta: int, *, axis: int = -1, length: int | None = None,
                wrap: str = "raise") -> np.ndarray:
    """Add `delta` to every field (GPTQ v1 -> v2: +1; v2 -> v1: -1) with no carry into the next field.

    `bits` is a field width (one word holds 32 // bits fields, natural order) or a single-word `Packing`.
    `axis`/`length` name the packed axis and its logical length: padding fields past `length` are excluded from
    the wrap check and written as 0, as `pack` writes them. wrap="raise" raises FieldWrapError (with `.count`)
    if any field would leave [0, 2^b); wrap="mask" keeps every field modulo 2^b (AutoGPTQ's `(z + 1) & mask`
    reading of a v1 all-ones field). GPTQModel's whole-word add of 0x11111111 carries a wrapped field into its
    neighbour; this never does. Returns a new int32 array (zero tensors are small: no tiling).
    """
    packing = bits if isinstance(bits, Packing) else Packing(int(bits), 32 // int(bits), 1, tuple(range(32 // int(bits))))
    if not _single_word(packing):
        raise ValueError(f"zero_offset needs fields inside one word, not {packing}; use the oracle path")
    if wrap not in WRAP_MODES:
        raise ValueError(f"wrap must be one of {WRAP_MODES}, not {wrap!r}")
    b, v = packing.bits, packing.values
    if abs(delta) >= 1 << b:
        raise ValueError(f"offset {delta} is not smaller than 2^{b}")
    x = _as_u32(words)
    out = np.empty(x.shape, dtype=np.uint32)
    if x.size == 0:
        return out.view(np.int32)
    xm, om = np.moveaxis(x, axis, -1), np.moveaxis(out, axis, -1)
    n_words = xm.shape[-1]
    n_last = v if length is None else int(length) - (n_words - 1) * v  # valid fields in the last word
    if not 0 < n_last <= v:
        raise ValueError(f"length {length} does not match {n_words} words of {v} fields")
    every, last_valid = _field_mask(range(v), b), _valid_fields(packing, n_last)
    d = delta % (1 << b)
    wrapped = 0
    for sl, counted in ((slice(None, -1), every), (slice(-1, None), last_valid)):
        carry = _add_fields(xm[..., sl], om[..., sl], packing, d, counted)
        if delta < 0:  # subtracting = adding 2^b - |delta|: a field wraps exactly when it does NOT carry
            carry ^= np.uint32(_bit_of_every_field(v, b, b - 1) & counted)
        wrapped += _bitwise_count_sum(carry)
    if n_last < v:
        om[..., -1] &= np.uint32(last_valid)
    if wrapped and wrap == "raise":
        raise FieldWrapError(wrapped, delta, b)
    return out.view(np.int32)


def all_fields_equal(words: np.ndarray, bits: int | Packing, value: int, *, axis: int = -1,
                     length: int | None = None) -> bool:
    """True when every (non-padding) field equals `value`: e.g. symmetric zero points (2^(b-1), or 2^(b-1) - 1
    in GPTQ v1) without unpacking, to decide whether compressed-tensors may drop weight_zero_point."""
    packing = bits if isinstance(bits, Packing) else Packing(int(bits), 32 // int(bits), 1, tuple(range(32 // int(bits))))
    if not _single_word(packing):
        raise ValueError(f"all_fields_equal needs fields inside one word, not {packing}")
    x = _as_u32(words)
    if x.size == 0:
        return True
    v, b = packing.values, packing.bits
    if not 0 <= value < 1 << b:
        return False
    every = _field_mask(range(v), b)
    want = np.uint32(sum(int(value) << (p * b) for p in range(v)))
    xm = np.moveaxis(x, axis, -1)
    n_last = v if length is None else int(length) - (xm.shape[-1] - 1) * v
    last = np.uint32(_valid_fields(packing, n_last))
    body_ok = bool(np.all((xm[..., :-1] & np.uint32(every)) == want))
    return body_ok and bool(np.all((xm[..., -1] & last) == (want & last)))


def _valid_fields(packing: Packing, n_valid: int) -> int:
    """Mask of the fields holding logical indices < n_valid (the rest of a last word is padding)."""
    return _field_mask((p for p in range(packing.values) if packing.order[p] < n_valid), packing.bits)


# ---- picking a path from two specs ------------------------------------------------------------------------

def _tensor(spec: LayoutSpec, name: str) -> TensorSpec:
    for t in spec.tensors:
        if t.name == name:
            return t
    raise KeyError(f"layout {spec.name} has no tensor {name!r}")


def _packed_label(t: TensorSpec) -> str | None:
    return None if t.packed_dim is None else t.dims[t.packed_dim]


def repack_route(src_t: TensorSpec, src_p: Packing | None, dst_t: TensorSpec, dst_p: Packing | None) -> str:
    """Which path `repack_tensor` takes: 'copy', 'transpose' (unpacked), 'reorder', 'transpose-words',
    'transpose-fields' or 'oracle' (unpack + pack). Decided by dims, packed_dim and field layout only."""
    if sorted(src_t.dims) != sorted(dst_t.dims):
        raise ValueError(f"{src_t.name} {list(src_t.dims)} and {dst_t.name} {list(dst_t.dims)} hold different axes")
    swapped = tuple(src_t.dims) != tuple(dst_t.dims)
    ls, ld = _packed_label(src_t), _packed_label(dst_t)
    if ls is None and ld is None:
        return "transpose" if swapped else "copy"
    if (ls is None) != (ld is None):
        raise ValueError(f"{src_t.name} -> {dst_t.name}: one side is not packed; unpacked layouts go through "
                         "awqfmt.logical decode/encode (their dtype and zero range are the layout's own)")
    if not _same_fields(src_p, dst_p):
        return "oracle"
    same_order = src_p.order == dst_p.order
    if ls == ld:
        if not swapped:
            return "copy" if same_order else ("reorder" if _single_word(src_p) else "oracle")
        return "transpose-words" if same_order or _single_word(src_p) else "oracle"
    if _single_word(src_p) and src_p.values * src_p.bits == 32 and len(src_t.dims) == 2:
        return "transpose-fields"
    return "oracle"


def _clear_padding(out: np.ndarray, packing: Packing, axis: int, length: int | None) -> None:
    """Zero the fields past `length` in the last word along `axis`, as `pack` writes them."""
    if length is None or out.size == 0:
        return
    n_last = int(length) - (out.shape[axis] - 1) * packing.values
    if n_last < packing.values:
        last = np.moveaxis(out, axis, -1)[..., -1]
        last &= np.uint32(_valid_fields(packing, n_last))


def _clear_unused_bits(out: np.ndarray, packing: Packing) -> None:
    """compressed-tensors 3-bit leaves the top 2 bits of each word unused; `pack` writes them as 0."""
    if _single_word(packing) and packing.values * packing.bits < 32:
        out &= np.uint32(_field_mask(range(packing.values), packing.bits))


def repack_tensor(stored: np.ndarray, src_spec: LayoutSpec, src_name: str, dst_spec: LayoutSpec, dst_name: str,
                  bits: int, *, length: int | None = None, wrap: str = "raise") -> np.ndarray:
    """Convert one stored tensor of `src_spec` into the matching tensor of `dst_spec`, exactly.

    `src_name`/`dst_name` are the specs' short names (`qweight`, `weight_packed`, `qzeros`, ...) of tensors with
    the same role and logical axes. `length` is the logical size of the source's packed axis when its last
    words carry padding (compressed-tensors packs K and N with ceil); every other size comes from the shape.
    For zeros the per-field offset `dst.zero_offset - src.zero_offset` is applied (v2 -> v1: -1), raising
    FieldWrapError (a ValueError with `.count`) for fields that would wrap, unless wrap="mask".
    Unpacked tensors (scales, g_idx) are copied or transposed; packed <-> unpacked raises (use awqfmt.logical).
    Returns a C-contiguous array (int32 when packed), byte-identical to `pack(unpack(...))`; when nothing
    changes it may be `stored` itself.
    """
    src_t, dst_t = _tensor(src_spec, src_name), _tensor(dst_spec, dst_name)
    if src_t.role != dst_t.role:
        raise ValueError(f"{src_spec.name}.{src_name} is {src_t.role}, {dst_spec.name}.{dst_name} is {dst_t.role}")
    if wrap not in WRAP_MODES:
        raise ValueError(f"wrap must be one of {WRAP_MODES}, not {wrap!r}")
    x = np.asarray(stored)
    if x.ndim != len(src_t.dims):
        raise ValueError(f"{src_name} has {x.ndim} axes, layout {src_spec.name} stores {len(src_t.dims)}")
    src_p = src_spec.packing(bits) if src_t.packed_dim is not None else None
    dst_p = dst_spec.packing(bits) if dst_t.packed_dim is not None else None
    route = repack_route(src_t, src_p, dst_t, dst_p)
    if route == "copy" and src_p is None:
        return np.ascontiguousarray(x)
    if route == "transpose":
        return transpose_words(x.view(np.uint32)).view(x.dtype) if x.dtype.itemsize == 4 else np.ascontiguousarray(x.T)
    delta = dst_spec.zero_offset - src_spec.zero_offset if src_t.role == "zeros" else 0
    padded = length is not None and length != src_p.unpacked_len(x.shape[src_t.packed_dim])
    if not _single_word(src_p) and (delta or padded):
        route = "oracle"  # GPTQ 3-bit blocks span 3 words: whole words move exactly, offsets and padding do not
    if route == "oracle":
        return _oracle(x, src_t, src_p, dst_t, dst_p, length, delta, wrap)
    if route == "copy" and not delta and not padded and _full_words(src_p):
        return np.ascontiguousarray(_as_u32(x)).view(np.int32)  # the words already are the answer
    out, dst_len = _move_words(x, route, src_t, src_p, dst_t, dst_p, length)
    if delta:
        out = zero_offset(out, dst_p, delta, axis=dst_t.packed_dim, length=dst_len, wrap=wrap)
    return out.view(np.int32)


def _full_words(p: Packing) -> bool:
    """No unused bits: every bit of every word belongs to a field."""
    return p.values * p.bits == 32 * p.words


def _move_words(x, route, src_t, src_p, dst_t, dst_p, length) -> tuple[np.ndarray, int | None]:
    """The word-level routes; returns (uint32 words in dst's layout, logical length of dst's packed axis)."""
    if route == "transpose-fields":
        out = transpose_packed(x, src_p, dst_p, axis=src_t.packed_dim, length=length,
                               transpose=tuple(src_t.dims[::-1]) == tuple(dst_t.dims))
        return out.view(np.uint32), x.shape[1 - src_t.packed_dim]  # dst packs the source's unpacked axis
    if route == "copy":
        out = np.array(_as_u32(x), dtype=np.uint32, order="C")
    elif route == "reorder":
        out = reorder_fields(x, src_p, dst_p).view(np.uint32)
    else:  # transpose-words
        out = transpose_words(x, src_p, dst_p).view(np.uint32)
    if _single_word(dst_p):  # match `pack`: padding fields and unused bits are written as 0
        _clear_padding(out, dst_p, dst_t.packed_dim, length)
        _clear_unused_bits(out, dst_p)
    return out, length


def _along(axis: int, sl: slice) -> tuple:
    return (slice(None),) * axis + (sl,)


def _oracle(x: np.ndarray, src_t: TensorSpec, src_p: Packing, dst_t: TensorSpec, dst_p: Packing,
            length: int | None, delta: int, wrap: str) -> np.ndarray:
    """unpack -> transpose -> offset -> pack, in bands of the source's unpacked axis cut at dst block edges, so
    the one-byte-per-value temporaries stay about 1M values whatever the tensor size."""
    if x.ndim != 2:
        raise ValueError("the generic path handles 2-D tensors")
    ls, ld = _packed_label(src_t), _packed_label(dst_t)
    band_label = next(lbl for lbl in src_t.dims if lbl != ls)
    sizes = {ls: src_p.unpacked_len(x.shape[src_t.packed_dim]) if length is None else int(length),
             band_label: x.shape[src_t.dims.index(band_label)]}
    unit = dst_p.values if band_label == ld else 1
    band = max(unit, (1 << 20) // max(1, sizes[ls]) // unit * unit)
    out = np.empty(tuple(dst_p.packed_len(sizes[lbl]) if lbl == ld else sizes[lbl] for lbl in dst_t.dims), np.int32)
    s_ax, d_ax = src_t.dims.index(band_label), dst_t.dims.index(band_label)
    top = 1 << src_p.bits
    wrapped = 0
    for c0, c1 in _spans(sizes[band_label], band):
        vals = unpack(x[_along(s_ax, slice(c0, c1))], src_p, axis=src_t.packed_dim, length=sizes[ls])
        if tuple(src_t.dims) != tuple(dst_t.dims):
            vals = vals.T
        if delta:
            shifted = vals.astype(np.int16) + delta
            wrapped += int(np.count_nonzero((shifted < 0) | (shifted >= top)))
            vals = (shifted & (top - 1)).astype(np.uint8)
        words = pack(vals, dst_p, axis=dst_t.packed_dim)
        w0 = c0 // dst_p.values * dst_p.words if band_label == ld else c0
        out[_along(d_ax, slice(w0, w0 + words.shape[d_ax]))] = words
    if wrapped and wrap == "raise":
        raise FieldWrapError(wrapped, delta, src_p.bits)
    return out
