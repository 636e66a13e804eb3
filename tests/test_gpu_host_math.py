"""Host-side arithmetic of the GPU launchers (no GPU needed): the division-free group index the kernels use."""

from __future__ import annotations

import numpy as np
import pytest

from awqfmt.gpu.gemm import GemmUnsupported, group_magic


def kernel_group_of(i: np.ndarray, gm: int, gmask: int) -> np.ndarray:
    """What w4a16_common.cuh's group_of computes: hi32(i * gm) + (i & gmask), in 32-bit unsigned arithmetic."""
    i = i.astype(np.uint64)
    return (((i * np.uint64(gm)) >> np.uint64(32)) + (i & np.uint64(gmask))) & np.uint64(0xFFFFFFFF)


@pytest.mark.parametrize("d,n", [(1, 1000), (2, 1000), (3, 999), (4, 256), (5, 4096), (7, 100003), (128, 28672),
                                 (32, 1 << 20), (96, 11008), (1000, 1 << 21), (4096, 4096), (8192, 8192), (10, 5)])
def test_group_magic_matches_integer_division(d, n):
    gm, gmask = group_magic(d, n)
    i = np.arange(n, dtype=np.uint64)
    assert np.array_equal(kernel_group_of(i, gm, gmask), i // np.uint64(d))


def test_group_magic_one_group_and_divisor_one():
    assert group_magic(4096, 4096) == (0, 0)       # one group: every index maps to 0
    assert group_magic(1, 10) == (0, 0xFFFFFFFF)   # unit groups: the index itself


def test_group_magic_refuses_what_32_bits_cannot_hold():
    # i * d must stay below 2^32 for the multiply-high form to be exact; 2^20 indices with d = 2^13 is over
    with pytest.raises(GemmUnsupported, match="32-bit"):
        group_magic(8191, 1 << 20)
