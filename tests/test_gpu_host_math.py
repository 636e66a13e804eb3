"""Host-side arithmetic of the GPU launchers (no GPU needed): the division-free group index the kernels use, the
shared-memory opt-in, and which split-K workspace a launch gets."""

from __future__ import annotations

import types

import numpy as np
import pytest

from awqfmt.gpu.gemm import GemmError, GemmUnsupported, group_magic


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


class _Kern:
    """What _allow_dynamic_smem reads and sets of a CuPy kernel."""

    def __init__(self, static, current=0, fail=False):
        self.shared_size_bytes = static
        self._max = current
        self.fail = fail
        self.set_to = None

    @property
    def max_dynamic_shared_size_bytes(self):
        return self._max

    @max_dynamic_shared_size_bytes.setter
    def max_dynamic_shared_size_bytes(self, v):
        if self.fail:
            raise RuntimeError("CUDA_ERROR_INVALID_VALUE")
        self._max = self.set_to = v


def test_dynamic_smem_opt_in_counts_static_plus_dynamic():
    from awqfmt.gpu.gemm import _allow_dynamic_smem

    k = _Kern(static=16 * 1024)
    _allow_dynamic_smem(k, 40 * 1024, "k")  # 56 KiB in all: over the default 48 KiB although dynamic is not
    assert k.set_to == 40 * 1024
    k = _Kern(static=8 * 1024)
    _allow_dynamic_smem(k, 40 * 1024, "k")  # exactly 48 KiB: no opt-in needed
    assert k.set_to is None
    k = _Kern(static=0, current=100 * 1024)
    _allow_dynamic_smem(k, 60 * 1024, "k")  # already allowed more
    assert k.set_to is None
    _allow_dynamic_smem(_Kern(static=60 * 1024, fail=True), 0, "k")  # no dynamic memory: nothing to ask for


def test_dynamic_smem_refusal_is_a_gemm_error():
    from awqfmt.gpu.gemm import _allow_dynamic_smem

    with pytest.raises(GemmError, match=r"cannot give w4a16_skinny<x> 200000 bytes"):
        _allow_dynamic_smem(_Kern(static=1024, fail=True), 200000, "w4a16_skinny<x>")


# ---- split-K workspaces (gemm.Workspace) with a stand-in for CuPy: which arrays a launch gets ------------

class _FakeCupy:
    """Just what Workspace touches: the current device id, and zeroed arrays (numpy)."""
    float32, uint32, uint64 = np.float32, np.uint32, np.uint64

    def __init__(self):
        self.device_id = 0
        self.cuda = types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=self.device_id))

    @staticmethod
    def zeros(n, dtype):
        return np.zeros(n, dtype=dtype)


@pytest.fixture
def fake_cupy(monkeypatch):
    from awqfmt.gpu import gemm

    fake = _FakeCupy()
    monkeypatch.setattr(gemm, "_cupy", lambda: fake)
    monkeypatch.setattr(gemm, "_workspaces", {})
    return fake


def test_workspace_grows_only_when_a_launch_needs_more(fake_cupy):
    from awqfmt.gpu.gemm import Workspace

    w = Workspace()
    ws, ws64, ct = w.arrays(1000, 10)
    assert ws.size == ws64.size == 1 << 20 and ct.size == 4096 and not ws.any() and not ws64.any()
    assert ws.dtype == np.float32 and ws64.dtype == np.uint64
    assert w.arrays(5000, 100)[0] is ws and w.arrays(5000, 100)[1] is ws64  # fits: the same arrays
    big, big64, _ = w.arrays((1 << 20) + 1, 10)
    assert big is not ws and big.size == big64.size == (1 << 20) + 1
    assert w.arrays(10, 5000)[2].size == 5000


def test_shared_workspace_is_one_per_device_and_an_own_one_is_separate(fake_cupy):
    from awqfmt.gpu.gemm import Workspace, _workspace

    a = _workspace(100, 10)
    assert _workspace(200, 20)[0] is a[0]           # the same device: shared
    own = Workspace()
    assert _workspace(100, 10, own)[0] is not a[0]  # its own arrays
    fake_cupy.device_id = 1
    assert _workspace(100, 10)[0] is not a[0]       # another device: another shared one


def test_a_workspace_stays_on_its_device(fake_cupy):
    from awqfmt.gpu.gemm import Workspace

    w = Workspace()
    w.arrays(10, 10)
    fake_cupy.device_id = 1
    with pytest.raises(GemmError, match="lives on GPU 0; the current device is GPU 1"):
        w.arrays(10, 10)
