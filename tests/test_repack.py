"""Word-level repacking (awqfmt.repack) against the generic oracle `pack(unpack(...))`, byte for byte."""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awqfmt import repack as R
from awqfmt.packing import pack, unpack
from awqfmt.spec import Packing, all_specs, get_spec

FAST_BITS = (2, 4, 8)


@contextmanager
def small_tiles(words: int):
    """Shrink the tile size so that small test arrays still cross many tile and chunk edges."""
    old = R.TILE_WORDS
    R.TILE_WORDS = words
    try:
        yield
    finally:
        R.TILE_WORDS = old


def _pairs(role: str):
    """Every (src layout, src tensor, dst layout, dst tensor, bits) the specs allow for one role."""
    out = []
    packed = [s for s in all_specs().values() if s.packed]  # `unpacked` has no words: convert decodes it via awqfmt.logical
    for s in packed:
        for d in packed:
            st_, dt_ = s.tensor(role), d.tensor(role)
            if st_ is None or dt_ is None:
                continue
            for bits in sorted(set(s.bits) & set(d.bits)):
                out.append((s.name, st_.name, d.name, dt_.name, bits))
    return out


PAIRS = _pairs("codes") + _pairs("zeros") + _pairs("scales")


def oracle(stored, src_spec, src_name, dst_spec, dst_name, bits, length, wrap="raise"):
    """The slow reference: unpack to one byte per value, transpose, add the zero offset, pack."""
    s_t = next(t for t in src_spec.tensors if t.name == src_name)
    d_t = next(t for t in dst_spec.tensors if t.name == dst_name)
    vals = stored
    if s_t.packed_dim is not None:
        vals = unpack(stored, src_spec.packing(bits), axis=s_t.packed_dim, length=length)
    if tuple(s_t.dims) != tuple(d_t.dims):
        vals = vals.T
    if s_t.role == "zeros":
        delta = dst_spec.zero_offset - src_spec.zero_offset
        shifted = vals.astype(np.int16) + delta
        bad = int(np.count_nonzero((shifted < 0) | (shifted >= 1 << bits)))
        if bad and wrap == "raise":
            raise R.FieldWrapError(bad, delta, bits)
        vals = (shifted & ((1 << bits) - 1)).astype(np.uint8)
    if d_t.packed_dim is not None:
        return pack(vals, dst_spec.packing(bits), axis=d_t.packed_dim)
    return np.ascontiguousarray(vals)


def _random_stored(rng, spec, t, bits, sizes, garbage: bool):
    """A stored tensor of logical `sizes`; with `garbage`, packed words are fully random (padding included)."""
    if t.packed_dim is None:
        shape = tuple(sizes[d] for d in t.dims)
        return rng.standard_normal(shape).astype(np.float16), None
    p = spec.packing(bits)
    packed_label = t.dims[t.packed_dim]
    if garbage:
        shape = tuple(p.packed_len(sizes[d]) if d == packed_label else sizes[d] for d in t.dims)
        return rng.integers(-(2**31), 2**31, size=shape, dtype=np.int64).astype(np.int32), sizes[packed_label]
    vals = rng.integers(0, 1 << bits, size=tuple(sizes[d] for d in t.dims), dtype=np.uint8)
    return pack(vals, p, axis=t.packed_dim), sizes[packed_label]


@pytest.mark.parametrize("src,src_name,dst,dst_name,bits", PAIRS)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_every_spec_pair_equals_the_oracle(src, src_name, dst, dst_name, bits, data):
    src_spec, dst_spec = get_spec(src), get_spec(dst)
    s_t = src_spec.tensor(next(t.role for t in src_spec.tensors if t.name == src_name))
    sizes = {"K": data.draw(st.integers(1, 70)), "N": data.draw(st.integers(1, 70)), "n_g": data.draw(st.integers(1, 5))}
    garbage = data.draw(st.booleans())
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    stored, length = _random_stored(rng, src_spec, s_t, bits, sizes, garbage)
    wrap = data.draw(st.sampled_from(["raise", "mask"]))
    tile = data.draw(st.sampled_from([16, 256, R.TILE_WORDS]))
    try:
        want = oracle(stored, src_spec, src_name, dst_spec, dst_name, bits, length, wrap)
    except R.FieldWrapError as exc:
        with pytest.raises(R.FieldWrapError) as got, small_tiles(tile):
            R.repack_tensor(stored, src_spec, src_name, dst_spec, dst_name, bits, length=length, wrap=wrap)
        assert got.value.count == exc.count
        return
    with small_tiles(tile):
        got = R.repack_tensor(stored, src_spec, src_name, dst_spec, dst_name, bits, length=length, wrap=wrap)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.flags.c_contiguous
    assert np.array_equal(got.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("src,src_name,dst,dst_name,bits", [p for p in PAIRS if p[4] in FAST_BITS])
def test_fast_path_for_every_spec_pair_of_2_4_8_bits(src, src_name, dst, dst_name, bits):
    s, d = get_spec(src), get_spec(dst)
    s_t = next(t for t in s.tensors if t.name == src_name)
    d_t = next(t for t in d.tensors if t.name == dst_name)
    sp = s.packing(bits) if s_t.packed_dim is not None else None
    dp = d.packing(bits) if d_t.packed_dim is not None else None
    assert R.repack_route(s_t, sp, d_t, dp) != "oracle"


CODE_PAIRS = [p for p in _pairs("codes") if p[4] in FAST_BITS]


@pytest.mark.parametrize("src,src_name,dst,dst_name,bits", CODE_PAIRS)
def test_round_trip_is_byte_identical(src, src_name, dst, dst_name, bits):
    s, d = get_spec(src), get_spec(dst)
    rng = np.random.default_rng(bits)
    K, N = 72, 40  # whole blocks: a round trip through a padded layout then reproduces every bit
    vals = rng.integers(0, 1 << bits, size=(K, N), dtype=np.uint8)
    s_t = s.tensor("codes")
    stored = pack(vals if s_t.dims == ("K", "N") else vals.T, s.packing(bits), axis=s_t.packed_dim)
    there = R.repack_tensor(stored, s, src_name, d, dst_name, bits, length={"K": K, "N": N}[s_t.dims[s_t.packed_dim]])
    d_t = d.tensor("codes")
    back = R.repack_tensor(there, d, dst_name, s, src_name, bits, length={"K": K, "N": N}[d_t.dims[d_t.packed_dim]])
    assert np.array_equal(back.view(np.uint32), stored.view(np.uint32))


# ---- the worked examples of formats.md -----------------------------------------------------------------

def _u32(a) -> int:
    return int(np.asarray(a).view(np.uint32).reshape(-1)[0])


def test_worked_examples():
    logical, awq, v1, v2 = (get_spec(n) for n in ("logical", "awq", "gptq", "gptq-v2"))
    row = pack(np.arange(8, dtype=np.uint8)[None, :], logical.packing(4), axis=1)
    assert _u32(row) == 0x76543210
    assert _u32(R.repack_tensor(row, logical, "qweight", awq, "qweight", 4)) == 0x75316420
    zeros = pack((np.arange(8, dtype=np.uint8) + 4)[None, :], logical.packing(4), axis=1)
    assert _u32(R.repack_tensor(zeros, logical, "qzeros", v2, "qzeros", 4)) == 0xBA987654
    assert _u32(R.repack_tensor(zeros, logical, "qzeros", v1, "qzeros", 4)) == 0xA9876543
    awq_zeros = R.repack_tensor(zeros, logical, "qzeros", awq, "qzeros", 4)
    assert _u32(awq_zeros) == 0xB975A864
    assert _u32(R.repack_tensor(awq_zeros, awq, "qzeros", v1, "qzeros", 4)) == 0xA9876543
    sym_v1 = np.array([[0x77777777] * 3], dtype=np.uint32).view(np.int32)
    assert _u32(R.repack_tensor(sym_v1, v1, "qzeros", v2, "qzeros", 4)) == 0x88888888
    sym_v2 = np.array([[0x88888888] * 3], dtype=np.uint32).view(np.int32)
    assert _u32(R.repack_tensor(sym_v2, v2, "qzeros", v1, "qzeros", 4)) == 0x77777777
    # the same logical column k = 0..7 in GPTQ's K-packed qweight, from AWQ's N-packed one
    col = pack(np.arange(8, dtype=np.uint8)[:, None].repeat(8, axis=1), awq.packing(4), axis=1)
    assert _u32(R.repack_tensor(col, awq, "qweight", v1, "qweight", 4)) == 0x76543210


def test_awq_order_is_two_swap_stages():
    awq, nat = get_spec("awq").packing(4), get_spec("logical").packing(4)
    assert len(R.swap_network(awq.order, nat.order, 4)) == 2
    assert len(R.swap_network(nat.order, awq.order, 4)) == 2


# ---- zero offsets -----------------------------------------------------------------------------------------

def test_zero_of_0_into_v1_is_refused_and_counted():
    v1, v2, ct = get_spec("gptq"), get_spec("gptq-v2"), get_spec("compressed-tensors")
    z = np.full((2, 16), 8, dtype=np.uint8)
    z[0, 3] = 0
    z[1, 9] = 0
    words = pack(z, v2.packing(4), axis=1)
    with pytest.raises(R.FieldWrapError) as exc:
        R.repack_tensor(words, v2, "qzeros", v1, "qzeros", 4)
    assert exc.value.count == 2 and isinstance(exc.value, ValueError)
    ct_zp = pack(z.T, ct.packing(4), axis=0)
    with pytest.raises(R.FieldWrapError):
        R.repack_tensor(ct_zp, ct, "weight_zero_point", v1, "qzeros", 4)


def test_v1_all_ones_into_v2_is_refused_unless_masked():
    v1, v2 = get_spec("gptq"), get_spec("gptq-v2")
    words = np.array([[0x7777777F]], dtype=np.uint32).view(np.int32)  # field 0 stored 15: z = 16 (kernels) or 0
    with pytest.raises(R.FieldWrapError) as exc:
        R.repack_tensor(words, v1, "qzeros", v2, "qzeros", 4)
    assert exc.value.count == 1
    masked = R.repack_tensor(words, v1, "qzeros", v2, "qzeros", 4, wrap="mask")
    assert _u32(masked) == 0x88888880


@pytest.mark.parametrize("bits", FAST_BITS)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_zero_offset_never_touches_neighbours(bits, data):
    v = 32 // bits
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shape = (data.draw(st.integers(1, 6)), data.draw(st.integers(1, 6)))
    words = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    # make wrapping fields common: all-zero and all-ones fields next to ordinary ones
    words &= rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32)
    words |= rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32) & np.uint32(0xF0F0F0F0)
    delta = data.draw(st.sampled_from([-1, 1, -(1 << (bits - 1)) + 1, (1 << (bits - 1)) - 1, 3 - (bits == 2)]))
    p = Packing(bits, v, 1, tuple(range(v)))
    fields = unpack(words, p, axis=1).astype(np.int16) + delta
    n_bad = int(np.count_nonzero((fields < 0) | (fields >= 1 << bits)))
    want = pack((fields & ((1 << bits) - 1)).astype(np.uint8), p, axis=1)
    got = R.zero_offset(words.view(np.int32), bits, delta, wrap="mask")
    assert np.array_equal(got, want)
    if n_bad:
        with pytest.raises(R.FieldWrapError) as exc:
            R.zero_offset(words.view(np.int32), bits, delta)
        assert exc.value.count == n_bad
    else:
        assert np.array_equal(R.zero_offset(words.view(np.int32), bits, delta), want)


def test_whole_word_add_corrupts_but_zero_offset_does_not():
    """GPTQModel's v1 -> v2 add of 0x11111111 carries an all-ones field into the next one."""
    word = np.array([0x7777777F], dtype=np.uint32)
    assert int((word + np.uint32(0x11111111))[0]) == 0x88888890  # field 1 damaged by the carry
    assert _u32(R.zero_offset(word.view(np.int32), 4, 1, wrap="mask")) == 0x88888880


def test_zero_offset_padding_is_ignored_and_cleared():
    ct, v1 = get_spec("compressed-tensors"), get_spec("gptq")
    p = ct.packing(4)
    z = np.full((3, 5), 8, dtype=np.uint8)  # [n_g, N] with N = 5: 3 padding fields in the last word
    words = pack(z, p, axis=1).view(np.uint32)
    out = R.zero_offset(words.view(np.int32), p, -1, axis=1, length=5)  # padding 0 - 1 is not a wrap
    assert np.array_equal(unpack(out, p, axis=1), np.pad(z - 1, ((0, 0), (0, 3))))
    assert v1.zero_offset == -1


# ---- the primitives with arbitrary field orders --------------------------------------------------------

def _perm(data, v):
    return tuple(data.draw(st.permutations(range(v))))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reorder_any_permutation(data):
    bits = data.draw(st.sampled_from([4, 8, 2]))
    v = 32 // bits
    src = Packing(bits, v, 1, _perm(data, v) if v <= 8 or data.draw(st.booleans()) else tuple(range(v)))
    dst = Packing(bits, v, 1, _perm(data, v))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    words = rng.integers(0, 2**32, size=(data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))),
                         dtype=np.uint64).astype(np.uint32).view(np.int32)
    want = pack(unpack(words, src, axis=1), dst, axis=1)
    with small_tiles(data.draw(st.sampled_from([4, 64, 1 << 16]))):
        got = R.reorder_fields(words, src, dst)
    assert np.array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_transpose_packed_any_orders_shapes_and_orientations(data):
    bits = data.draw(st.sampled_from(FAST_BITS))
    v = 32 // bits
    src = Packing(bits, v, 1, _perm(data, v))
    dst = Packing(bits, v, 1, _perm(data, v))
    axis = data.draw(st.sampled_from([0, 1]))
    transpose = data.draw(st.booleans())
    rows, packed_len = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    words_along = src.packed_len(packed_len)
    shape = (rows, words_along) if axis == 1 else (words_along, rows)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    words = rng.integers(0, 2**32, size=shape, dtype=np.uint64).astype(np.uint32).view(np.int32)
    vals = unpack(words, src, axis=axis, length=packed_len)
    want = pack(vals, dst, axis=1 - axis)
    if transpose:
        want = np.ascontiguousarray(want.T)
    with small_tiles(data.draw(st.sampled_from([8, 200, 1 << 16]))):
        got = R.transpose_packed(words, src, dst, axis=axis, length=packed_len, transpose=transpose)
    assert got.flags.c_contiguous and got.dtype == np.int32
    assert np.array_equal(got, want)


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_transpose_words_with_reorder(data):
    bits = data.draw(st.sampled_from(FAST_BITS))
    v = 32 // bits
    src, dst = Packing(bits, v, 1, _perm(data, v)), Packing(bits, v, 1, _perm(data, v))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    words = rng.integers(0, 2**32, size=(data.draw(st.integers(1, 90)), data.draw(st.integers(1, 90))),
                         dtype=np.uint64).astype(np.uint32).view(np.int32)
    with small_tiles(data.draw(st.sampled_from([16, 1 << 16]))):
        got = R.transpose_words(words, src, dst)
    assert np.array_equal(got, np.ascontiguousarray(R.reorder_fields(words, src, dst).T))


def test_large_module_crosses_tiles_and_matches_the_oracle():
    """A module big enough for several real tiles, odd sizes on both axes, 4-bit AWQ -> GPTQ / CT and back."""
    awq, gptq, ct = get_spec("awq"), get_spec("gptq"), get_spec("compressed-tensors")
    rng = np.random.default_rng(7)
    K, N = 1000, 776  # K not a multiple of 64, N a multiple of 8 (AWQ needs it)
    vals = rng.integers(0, 16, size=(K, N), dtype=np.uint8)
    wa = pack(vals, awq.packing(4), axis=1)
    wc = R.repack_tensor(wa, awq, "qweight", ct, "weight_packed", 4)
    assert np.array_equal(wc, pack(vals.T, ct.packing(4), axis=1))
    assert np.array_equal(R.repack_tensor(wc, ct, "weight_packed", awq, "qweight", 4, length=K), wa)
    wg = R.repack_tensor(wa[:992], awq, "qweight", gptq, "qweight", 4)
    assert np.array_equal(wg, pack(vals[:992], gptq.packing(4), axis=0))
    assert np.array_equal(R.repack_tensor(wg, gptq, "qweight", awq, "qweight", 4), wa[:992])


def test_refuses_tensors_of_different_roles_or_axes():
    awq, ct = get_spec("awq"), get_spec("compressed-tensors")
    with pytest.raises(ValueError):
        R.repack_tensor(np.zeros((8, 1), np.int32), awq, "qweight", ct, "weight_zero_point", 4)


def test_packed_to_unpacked_goes_through_logical():
    awq, unpacked = get_spec("awq"), get_spec("unpacked")
    with pytest.raises(ValueError, match="logical"):
        R.repack_tensor(np.zeros((8, 1), np.int32), awq, "qweight", unpacked, "weight_codes", 4)


# ---- ground truth from a peer tool: compressed-tensors' own AWQ converter ------------------------------

def _modules(tensors, suffix):
    return sorted(k[: -len(suffix)] for k in tensors if k.endswith(suffix))


def test_matches_compressed_tensors_own_awq_conversion():
    """ct_from_awq_tiny is compressed-tensors 0.20's AutoAWQConverter run on awq_tiny_llama: same words."""
    from safetensors.numpy import load_file

    from conftest import FIXTURES

    awq_t = load_file(str(FIXTURES / "awq_tiny_llama" / "model.safetensors"))
    ct_t = load_file(str(FIXTURES / "ct_from_awq_tiny" / "model.safetensors"))
    awq, ct = get_spec("awq"), get_spec("compressed-tensors")
    modules = _modules(awq_t, ".qweight")
    assert modules and modules == _modules(ct_t, ".weight_packed")
    for m in modules:
        wp = R.repack_tensor(awq_t[m + ".qweight"], awq, "qweight", ct, "weight_packed", 4)
        assert np.array_equal(wp, ct_t[m + ".weight_packed"]), m
        zp = R.repack_tensor(awq_t[m + ".qzeros"], awq, "qzeros", ct, "weight_zero_point", 4)
        assert np.array_equal(zp, ct_t[m + ".weight_zero_point"]), m
        # and back, bit for bit
        K = int(ct_t[m + ".weight_shape"][1])
        assert np.array_equal(R.repack_tensor(wp, ct, "weight_packed", awq, "qweight", 4, length=K),
                              awq_t[m + ".qweight"])


@pytest.mark.parametrize("fixture,bits", [("gptq_b2_g32_asym", 2), ("gptq_b3_g128_asym", 3),
                                          ("gptq_b4_g64_sym", 4), ("gptq_b8_gall_sym", 8)])
def test_real_gptq_codes_survive_the_word_paths(fixture, bits):
    """AutoGPTQ's own qweight -> compressed-tensors -> logical (N-packed) decodes to AutoGPTQ's own codes."""
    from safetensors.numpy import load_file

    from conftest import FIXTURES

    tensors = load_file(str(FIXTURES / fixture / "model.safetensors"))
    ref = load_file(str(FIXTURES / f"{fixture}.ref.safetensors"))
    gptq, ct, logical = get_spec("gptq"), get_spec("compressed-tensors"), get_spec("logical")
    modules = [m for m in _modules(tensors, ".qweight") if m + ".codes" in ref]
    assert modules
    for m in modules:
        codes = ref[m + ".codes"]
        K = codes.shape[0]
        wp = R.repack_tensor(tensors[m + ".qweight"], gptq, "qweight", ct, "weight_packed", bits)
        assert np.array_equal(unpack(wp, ct.packing(bits), axis=1, length=K).T, codes), m
        if bits in logical.bits:
            lq = R.repack_tensor(wp, ct, "weight_packed", logical, "qweight", bits, length=K)
            assert np.array_equal(unpack(lq, logical.packing(bits), axis=1), codes), m


@pytest.mark.parametrize("bits", FAST_BITS)
def test_all_fields_equal_sees_symmetric_zeros_without_unpacking(bits):
    ct = get_spec("compressed-tensors")
    p = ct.packing(bits)
    half = 1 << (bits - 1)
    z = np.full((5, 3), half, dtype=np.uint8)  # [N, n_g] with N = 5: padding in the last word
    zp = pack(z, p, axis=0)
    assert R.all_fields_equal(zp, p, half, axis=0, length=5)
    assert not R.all_fields_equal(zp, p, half - 1, axis=0, length=5)
    z[4, 2] = half - 1
    assert not R.all_fields_equal(pack(z, p, axis=0), p, half, axis=0, length=5)
    assert R.all_fields_equal(np.array([[0x77777777]], np.uint32).view(np.int32), 4, 7)
