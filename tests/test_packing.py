"""The spec-driven packing engine: round trips for every layout and width, and the worked examples of formats.md."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awqfmt.packing import pack, unpack
from awqfmt.spec import all_specs, get_spec

PACKED_TENSORS = [
    (spec.name, t.name, bits)
    for spec in all_specs().values()
    for t in spec.tensors
    if t.packed_dim is not None
    for bits in spec.bits
]


@pytest.mark.parametrize("layout,tensor,bits", PACKED_TENSORS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_round_trip_every_layout_and_width(layout, tensor, bits, data):
    spec = get_spec(layout)
    t = next(x for x in spec.tensors if x.name == tensor)
    p = spec.packing(bits)
    rows = data.draw(st.integers(1, 5))
    blocks = data.draw(st.integers(1, 4))
    length = blocks * p.values - data.draw(st.integers(0, p.values - 1))  # padding when not a whole block
    shape = [rows, rows]
    shape[t.packed_dim] = length
    seed = data.draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, 1 << bits, size=shape, dtype=np.uint8)
    words = pack(values, p, axis=t.packed_dim)
    assert words.dtype == np.int32
    assert words.shape[t.packed_dim] == p.packed_len(length)
    back = unpack(words, p, axis=t.packed_dim, length=length)
    assert np.array_equal(back, values)
    # and words -> values -> words is the identity on every word that has no padding bits
    assert np.array_equal(pack(back, p, axis=t.packed_dim), words)


def _word(layout: str, bits: int, row: list[int]) -> int:
    p = get_spec(layout).packing(bits)
    return int(pack(np.array([row], dtype=np.uint8), p, axis=1).view(np.uint32)[0, 0])


def test_worked_examples_from_formats_md():
    assert _word("awq", 4, list(range(8))) == 0x75316420
    assert _word("logical", 4, list(range(8))) == 0x76543210
    zeros = [n + 4 for n in range(8)]
    # GPTQ v1 stores zero - 1; v2 and AWQ store zero as is
    v1 = get_spec("gptq")
    assert _word("gptq", 4, [z + v1.zero_offset for z in zeros]) == 0xA9876543
    assert _word("gptq-v2", 4, zeros) == 0xBA987654
    assert _word("awq", 4, zeros) == 0xB975A864
    assert _word("gptq", 4, [8 + v1.zero_offset] * 8) == 0x77777777
    assert _word("gptq-v2", 4, [8] * 8) == 0x88888888


def test_gptq_three_bit_fields_straddle_words():
    p = get_spec("gptq").packing(3)
    column = np.tile(np.arange(8, dtype=np.uint8), 4)[:, None]
    words = pack(column, p, axis=0).view(np.uint32)[:, 0]
    assert [hex(w) for w in words] == ["0x88fac688", "0xc688fac6", "0xfac688fa"]


def test_compressed_tensors_three_bit_is_ten_per_word():
    p = get_spec("compressed-tensors").packing(3)
    assert (p.values, p.words) == (10, 1)
    row = np.full((1, 10), 7, dtype=np.uint8)
    assert int(pack(row, p, axis=1).view(np.uint32)[0, 0]) == (1 << 30) - 1  # two top bits unused


def test_pack_rejects_values_that_do_not_fit():
    with pytest.raises(ValueError, match="does not fit in 4 bits"):
        pack(np.array([[16, 0, 0, 0, 0, 0, 0, 0]], dtype=np.uint8), get_spec("awq").packing(4), axis=1)
