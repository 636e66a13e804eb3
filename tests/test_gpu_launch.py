"""The PDL launcher's host side (no GPU needed): the ctypes structures match the CUDA driver's, kernel arguments
become the C values the kernels take, and AWQFMT_PDL=0 turns PDL off without touching CuPy."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
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
