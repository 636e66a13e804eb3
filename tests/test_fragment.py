"""The frag device layout (awqfmt/gpu/fragment.py) on the CPU: the same xp-generic code the GPU runs, with numpy.

The kernel (kernels/w4a16_frag.cu) relies on one formula for where W[k, n] sits; these tests check the builder
against that formula, its inverse, and the spec-driven decode of every layout the kernels read.
"""

from __future__ import annotations

import numpy as np
import pytest

from awqfmt.gpu.fragment import (FragmentUnsupported, fragment_position, fragment_supported, from_fragment,
                                 logical_codes, to_fragment)
from awqfmt.logical import LogicalModule, encode
from awqfmt.spec import get_spec


def _module(rng, K, N, G, layout):
    n_g = K // (K if G == -1 else G)
    lo, hi = (1, 17) if layout == "gptq" else (0, 16)  # GPTQ v1 stores z - 1: z = 16 is storable, z = 0 is not
    return LogicalModule(bits=4, group_size=G, codes=rng.integers(0, 16, (K, N), dtype=np.uint8),
                         zeros=rng.integers(lo, hi, (n_g, N)).astype(np.uint16),
                         scales=rng.random((n_g, N)).astype(np.float16), scale_dtype="F16")


def test_every_weight_sits_where_the_kernel_reads_it():
    rng = np.random.default_rng(1)
    K, N = 320, 192
    q = rng.integers(0, 16, (K, N), dtype=np.uint8)
    z = rng.integers(0, 16, (5, N)).astype(np.int16)
    qf, zf, sf = to_fragment(np, q, z, rng.integers(0, 1 << 16, (5, N), dtype=np.uint16))
    assert qf.shape == (N // 64, K // 64, 4, 32, 4) and qf.dtype == np.int32
    k, n = np.meshgrid(np.arange(K), np.arange(N), indexing="ij")
    T, kb, s, lane, w, e = fragment_position(k.ravel(), n.ravel())
    nib = (qf.view(np.uint32)[T, kb, s, lane, w] >> (4 * e).astype(np.uint32)) & 0xF
    assert np.array_equal(nib.reshape(K, N), q)


def test_lane_k_pairs_are_the_mma_fragments():
    """Lane (r, c), step s: nibbles p and p + 4 of word w hold k and k + 1 of one column (one lop3 -> one half2):
    the A fragment register a_p of column tile w (16 columns): column 16w + r (+8 for odd p), k-pair 2c (+8 for
    p >= 2) in the kernel's k order."""
    rng = np.random.default_rng(2)
    q = rng.integers(0, 16, (64, 64), dtype=np.uint8)
    qf, _, _ = to_fragment(np, q, np.zeros((1, 64), np.int16), np.zeros((1, 64), np.uint16))
    words = qf.view(np.uint32)[0, 0]
    for s in range(4):
        for lane in range(32):
            r, c = divmod(lane, 4)
            for w in range(4):
                for p in range(4):
                    lo = (words[s, lane, w] >> (4 * p)) & 0xF
                    hi = (words[s, lane, w] >> (4 * p + 16)) & 0xF
                    k = 32 * (s // 2) + 8 * c + 4 * (s % 2) + 2 * (p // 2)
                    col = 16 * w + 8 * (p % 2) + r
                    assert (lo, hi) == (q[k, col], q[k + 1, col])


def test_zeros_and_scales_follow_the_fragments():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 16, (128, 128), dtype=np.uint8)
    z = rng.integers(0, 17, (2, 128)).astype(np.int16)
    s = rng.integers(0, 1 << 16, (2, 128), dtype=np.uint16)
    _, zf, sf = to_fragment(np, q, z, s)
    for T in range(2):
        for g in range(2):
            for r in range(8):
                for w in range(4):
                    for u in range(2):
                        assert zf[T, g, r, 2 * w + u] == z[g, 64 * T + 16 * w + 8 * u + r]
                        assert sf[T, g, r, 2 * w + u] == s[g, 64 * T + 16 * w + 8 * u + r]


def test_round_trip():
    rng = np.random.default_rng(4)
    q = rng.integers(0, 16, (192, 320), dtype=np.uint8)
    z = rng.integers(0, 256, (3, 320)).astype(np.int16)
    s = rng.integers(0, 1 << 16, (3, 320), dtype=np.uint16)
    q2, z2, s2 = from_fragment(np, *to_fragment(np, q, z, s))
    assert np.array_equal(q2, q) and np.array_equal(z2, z) and np.array_equal(s2, s)


@pytest.mark.parametrize("layout,zero_offset", [("awq", 0), ("logical", 0), ("gptq", -1), ("gptq-v2", 0)])
def test_logical_codes_read_each_layout_by_its_spec(layout, zero_offset):
    rng = np.random.default_rng(5)
    module = _module(rng, 256, 128, 64, layout)
    t = {name: arr for name, (arr, _) in encode(get_spec(layout), module).items()}
    q, z = logical_codes(np, layout, t["qweight"], t["qzeros"], zero_offset)
    assert np.array_equal(q, module.codes)
    assert np.array_equal(z, module.zeros.astype(np.int16))


def test_limits():
    assert fragment_supported(4096, 4096, 128) is None
    assert fragment_supported(4096, 4096, -1) is None
    assert fragment_supported(576, 192, 576) is None
    assert "multiple of 64" in fragment_supported(1024, 512, 32)
    assert "multiples of 64" in fragment_supported(1000, 512, -1)
    assert "multiples of 64" in fragment_supported(1024, 520, 128)
    with pytest.raises(FragmentUnsupported, match="0..255"):
        to_fragment(np, np.zeros((64, 64), np.uint8), np.full((1, 64), 256, np.int16), np.zeros((1, 64), np.uint16))
