"""Every CUDA source in kernels/ must compile (CI has nvcc but no GPU), with its template bodies instantiated.

The sources are also compiled at run time by NVRTC (cupy.RawModule), which has no system headers: they may
include only the local w4a16_common.cuh.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

KDIR = Path(__file__).resolve().parent.parent / "kernels"
SOURCES = sorted(KDIR.glob("*.cu"))
NVCC = shutil.which("nvcc")


def test_kernel_sources_exist():
    assert SOURCES, f"no .cu files in {KDIR}"


@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_only_local_includes(src):
    for path in [src, *KDIR.glob("*.cuh")]:
        for inc in re.findall(r'^\s*#\s*include\s+(\S+)', path.read_text(), flags=re.M):
            assert inc.startswith('"') and (KDIR / inc.strip('"')).is_file(), \
                f"{path.name} includes {inc}: NVRTC has no system headers; include only local .cuh files"


@pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("src", SOURCES, ids=lambda p: p.name)
def test_nvcc_compiles(src, tmp_path):
    cmd = [NVCC, "-arch=sm_90", "-std=c++17", "-DAWQFMT_INSTANTIATE_ALL", f"-I{KDIR}", "-c", str(src),
           "-o", str(tmp_path / (src.stem + ".o"))]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout}\n{res.stderr}"
    assert "error" not in res.stderr.lower(), res.stderr


@pytest.mark.parametrize("name", ["w4a16_gemv.cu", "w4a16_gemm.cu"])
def test_activations_never_read_through_the_read_only_path(name):
    """x may be written by the kernel before ours while ours starts (PDL, pdl_wait in w4a16_common.cuh): an
    `ld.global.nc` load of it is free to move above the wait (run 13c saw exactly that), so x is read with the
    coherent ldx_* helpers (or cp.async) only."""
    text = (KDIR / name).read_text()
    bad = re.findall(r"ldg_\w+(?:<[^>]*>)?\(\s*(?:x_t|x|px)\b", text)
    assert not bad, f"{name} loads x through the read-only path: {bad}"
    assert "ldx_" in text
