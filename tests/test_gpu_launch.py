"""The PDL launcher's host side (no GPU needed): the ctypes structures match the CUDA driver's, kernel arguments
become the C values the kernels take, and AWQFMT_PDL=0 turns PDL off without touching CuPy."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from awqfmt.gpu import launch

# sizeof / offsetof from cuda.h (CUDA 12 and 13): CUlaunchConfig, CUlaunchAttribute, and the attribute id
HEADER_FACTS = {"config_size": 56, "stream_at": 32, "attrs_at": 40, "num_attrs_at": 48, "attr_size": 72,
                "value_at": 8, "pdl_id": 6}


def _ours() -> dict:
    return {"config_size": ctypes.sizeof(launch._Config), "stream_at": launch._Config.stream.offset,
            "attrs_at": launch._Config.attrs.offset, "num_attrs_at": launch._Config.num_attrs.offset,
            "attr_size": ctypes.sizeof(launch._Attr), "value_at": launch._Attr.value.offset,
            "pdl_id": launch.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION}


def test_structures_match_the_driver_header_facts():
    assert _ours() == HEADER_FACTS


def _cuda_include() -> Path | None:
    """The CUDA toolkit's include directory (nvcc may be a wrapper script, so look in the usual places too)."""
    cands = [Path(os.environ[v]) / "include" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    nvcc = shutil.which("nvcc")
    if nvcc:
        cands.append(Path(os.path.realpath(nvcc)).parent.parent / "include")
    cands += [Path("/usr/local/cuda/include"), *sorted(Path("/usr/local").glob("cuda-*/include"), reverse=True)]
    return next((c for c in cands if (c / "cuda.h").is_file()), None)


@pytest.mark.skipif(_cuda_include() is None or shutil.which("cc") is None, reason="no cuda.h or C compiler")
def test_structures_match_this_machines_cuda_h(tmp_path):
    src = tmp_path / "layout.c"
    src.write_text(
        "#include <cuda.h>\n#include <stdio.h>\n#include <stddef.h>\n"
        "int main(void) { printf(\"%zu %zu %zu %zu %zu %zu %d\", sizeof(CUlaunchConfig), offsetof(CUlaunchConfig, "
        "hStream), offsetof(CUlaunchConfig, attrs), offsetof(CUlaunchConfig, numAttrs), sizeof(CUlaunchAttribute), "
        "offsetof(CUlaunchAttribute, value), (int)CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION); }\n")
    exe = tmp_path / "layout"
    subprocess.run(["cc", f"-I{_cuda_include()}", str(src), "-o", str(exe)], check=True, capture_output=True)
    got = [int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    assert dict(zip(HEADER_FACTS, got)) == _ours()


class _FakeDeviceArray:
    """What _arg needs of a CuPy array: .data.ptr."""

    class _Mem:
        ptr = 0x7F0000001000

    data = _Mem()


def test_arguments_become_the_kernels_c_types():
    assert isinstance(launch._arg(np.int32(-5)), ctypes.c_int32) and launch._arg(np.int32(-5)).value == -5
    assert launch._arg(np.uint32(0xFFFFFFFF)).value == 0xFFFFFFFF
    assert isinstance(launch._arg(np.uint64(1 << 40)), ctypes.c_uint64)
    assert launch._arg(np.float32(1.5)).value == 1.5
    ptr = launch._arg(_FakeDeviceArray())
    assert isinstance(ptr, ctypes.c_void_p) and ptr.value == 0x7F0000001000
    with pytest.raises(TypeError, match="int"):
        launch._arg(7)  # a bare Python int has no width: the kernels' parameters are 32- or 64-bit
    with pytest.raises(TypeError):
        launch._arg(np.float16(1))


def test_pdl_off_by_environment_needs_no_cupy(monkeypatch):
    monkeypatch.setenv("AWQFMT_PDL", "0")
    assert launch.pdl_available() is False


class _RecordingDriver:
    """Stands in for libcuda: decodes what cuLaunchKernelEx receives."""

    def __init__(self, result: int = 0, n_params: int = 0):
        self.calls: list[dict] = []
        self.result = result
        self.n_params = n_params

    def cuLaunchKernelEx(self, cfg_ref, func, params, extra):
        c = cfg_ref._obj
        attr = c.attrs.contents
        self.calls.append({
            "grid": (c.grid_x, c.grid_y, c.grid_z), "block": (c.block_x, c.block_y, c.block_z),
            "shared_mem": c.shared_mem, "stream": c.stream, "num_attrs": c.num_attrs, "attr_id": attr.id,
            "pdl": attr.value.programmatic_stream_serialization_allowed, "func": func, "extra": extra,
            # the 8 bytes each kernelParams entry points at, read while the caller's values are alive
            "params": [ctypes.string_at(params[i], 8) for i in range(self.n_params)]})
        return self.result

    def cuGetErrorString(self, res, msg_ref):
        msg_ref._obj.value = b"CUDA_ERROR_INVALID_VALUE"
        return 0


def _fake_cupy(stream_ptr: int):
    import types

    stream = types.SimpleNamespace(ptr=stream_ptr)
    return types.SimpleNamespace(cuda=types.SimpleNamespace(get_current_stream=lambda: stream))


class _FakeKernel:
    class kernel:
        ptr = 0xABC0


def test_launch_hands_the_driver_exactly_the_launch(monkeypatch):
    args = (_FakeDeviceArray(), np.int32(-3), np.uint32(0xFFFFFFF0), np.uint64(1 << 40), np.float32(0.5))
    drv = _RecordingDriver(n_params=len(args))
    monkeypatch.setitem(launch._state, "lib", drv)
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0x5150))
    launch.launch_pdl(_FakeKernel, (16, 8), (256,), args, shared_mem=4096)
    (call,) = drv.calls
    assert call["grid"] == (16, 8, 1) and call["block"] == (256, 1, 1) and call["shared_mem"] == 4096
    assert call["stream"] == 0x5150 and call["func"] == 0xABC0 and call["extra"] is None
    assert (call["num_attrs"], call["attr_id"], call["pdl"]) == (1, 6, 1)
    # kernelParams[i] points at argument i's value, in the kernel parameter's C type
    ptr, i32, u32, u64, f32 = (struct.unpack_from(f, b)[0] for f, b in zip("QiIQf", call["params"]))
    assert (ptr, i32, u32, u64, f32) == (_FakeDeviceArray.data.ptr, -3, 0xFFFFFFF0, 1 << 40, 0.5)


def test_launch_failure_carries_the_drivers_message(monkeypatch):
    monkeypatch.setitem(launch._state, "lib", _RecordingDriver(result=1))
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(0))
    with pytest.raises(RuntimeError, match="cuLaunchKernelEx: 1 CUDA_ERROR_INVALID_VALUE"):
        launch.launch_pdl(_FakeKernel, (1,), (32,), (np.int32(1),))


def test_pdl_needs_compute_capability_9_per_device(monkeypatch):
    """Hopper and later only, decided per device (a host may mix GPU generations)."""
    import types

    current = {"dev": 0}
    caps = {0: "90", 1: "80"}
    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(
        runtime=types.SimpleNamespace(getDevice=lambda: current["dev"]),
        Device=lambda d: types.SimpleNamespace(compute_capability=caps[d])))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(launch._state, "lib", _RecordingDriver())
    monkeypatch.setitem(launch._state, "cc", {})
    monkeypatch.delenv("AWQFMT_PDL", raising=False)
    assert launch.pdl_available() is True
    current["dev"] = 1
    assert launch.pdl_available() is False
    monkeypatch.setitem(launch._state, "lib", None)  # a driver without cuLaunchKernelEx
    current["dev"] = 0
    assert launch.pdl_available() is False
