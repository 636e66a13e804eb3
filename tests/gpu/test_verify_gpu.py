"""`awqfmt verify --backend cupy`: the CUDA kernels on every 4-bit fixture and on converted outputs
(skipped without CuPy and an NVIDIA GPU).

Each module's kernel output (fp16, fp32 accumulation) must be within 2e-3 relative error of the float64
reference from the logical decode, with no NaN/inf; with --against, the kernel outputs of the two layouts must
agree as closely. Activations are fresh for every run (random seed, printed on failure).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from awqfmt.cli import app
from awqfmt.spec import get_spec
from awqfmt.verify import TOLERANCE, verify_path
from awqfmt.gpu import supports as gpu_supports
from awqfmt.verify_backends import gpu_available

from conftest import REAL_CHECKPOINTS
from verify_support import only, repack_in_order, write_layout

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not gpu_available(), reason="needs CuPy and an NVIDIA GPU")]

FOUR_BIT = sorted(n for n, (_, _, bits, _) in REAL_CHECKPOINTS.items() if bits == 4)
TINY = REAL_CHECKPOINTS["awq_tiny_llama"][0]
MINILM = REAL_CHECKPOINTS["minilm_awq_g128"][0]


def _seed() -> int:
    return int(np.random.SeedSequence().entropy % (1 << 62))


def _assert_kernel_ran_and_passed(result, seed):
    assert result.backend == "cupy", result.notes
    assert result.ok, (seed, [f.message for f in result.findings])
    for m in result.modules:
        on_gpu = gpu_supports(m.run.layout, m.run.bits)
        assert m.run.backend == ("cupy" if on_gpu else "numpy"), (m.name, m.run.layout)
        assert m.run.check.nonfinite == 0 and m.run.check.rel_err <= TOLERANCE, (seed, m.name, m.run.check)


@pytest.mark.parametrize("name", FOUR_BIT)
@pytest.mark.parametrize("tokens", [1, 7, 16, 33, 256])  # the skinny kernel up to M = 32, dequant + cuBLAS above
def test_cupy_verify_passes_on_every_4bit_fixture(name, tokens):
    seed = _seed()
    result = verify_path(REAL_CHECKPOINTS[name][0], backend="cupy", tokens=tokens, seed=seed)
    _assert_kernel_ran_and_passed(result, seed)
    if name != "ct_from_awq_tiny":  # compressed-tensors has no GPU kernel: it runs on numpy
        assert all(m.run.backend == "cupy" for m in result.modules)
        # an fp16 output is rounded: an exact zero error would mean the kernel was not what ran
        assert max(m.run.check.rel_err for m in result.modules) > 1e-6


@pytest.mark.parametrize("src_name,layout,scale_dtype", [
    ("minilm_awq_g128", "logical", None), ("minilm_awq_g128", "gptq-v2", None), ("minilm_awq_g128", "awq", "BF16"),
    ("awq_tiny_llama", "gptq", None), ("awq_tiny_llama", "gptq-v2", "BF16"), ("gptq_b4_g64_asym_act", "gptq-v2", None),
    ("gptq_b4_g64_sym", "awq", None), ("gptq_b4_g64_sym", "logical", "BF16"),
])
def test_cupy_verify_passes_on_converted_outputs(tmp_path, src_name, layout, scale_dtype):
    seed = _seed()
    src = REAL_CHECKPOINTS[src_name][0]
    dst = write_layout(src, tmp_path / "out", layout, scale_dtype=scale_dtype)
    alone = verify_path(dst, backend="cupy", tokens=8, seed=seed)
    _assert_kernel_ran_and_passed(alone, seed)
    if scale_dtype is None:  # lossless conversion: the two layouts' kernels must agree
        both = verify_path(dst, against=src, backend="cupy", tokens=8, seed=seed)
        _assert_kernel_ran_and_passed(both, seed)
        assert all(m.against.backend == ("cupy" if gpu_supports(m.against.layout, m.against.bits) else "numpy") for m in both.modules)


@pytest.mark.parametrize("layout,role,wrong", [("awq", "zeros", tuple(range(8))),
                                               ("gptq-v2", "zeros", get_spec("awq").packing(4).order)])
def test_cupy_verify_catches_qzeros_packed_in_the_wrong_order(tmp_path, layout, role, wrong):
    bad = "model.layers.0.self_attn.o_proj"
    dst = write_layout(TINY, tmp_path / "bad", layout, damage=only(bad, repack_in_order(layout, role, wrong)))
    result = verify_path(dst, against=TINY, backend="cupy", seed=_seed())
    assert result.failed_modules == [bad]
    assert [(f.code, f.module) for f in result.findings if f.severity.value == "error"] == [("verify.against-mismatch", bad)]
    out = CliRunner().invoke(app, ["verify", str(dst), "--against", str(TINY), "--backend", "cupy", "--json"])
    assert out.exit_code == 1
    assert [m["name"] for m in json.loads(out.stdout)["modules"] if not m["ok"]] == [bad]


def test_auto_picks_cupy_and_other_widths_fall_back_to_numpy():
    result = verify_path(REAL_CHECKPOINTS["gptq_b3_g128_asym"][0], backend="auto")
    assert result.backend == "cupy" and result.ok
    assert {m.run.backend for m in result.modules} == {"numpy"}
    assert any("gptq 3-bit" in n for n in result.notes)


def test_cli_cupy_json():
    out = CliRunner().invoke(app, ["verify", str(MINILM), "--backend", "cupy", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["backend"] == {"requested": "cupy", "used": "cupy"} and doc["summary"]["passed"] == 37


@pytest.mark.parametrize("name,layout", [("awq_tiny_llama", "gptq-v2"), ("minilm_awq_g128", "logical"),
                                         ("gptq_b4_g64_asym_act", "gptq"), ("gptq_b4_g64_sym", "awq")])
def test_cupy_verify_passes_on_awqfmt_convert_outputs(tmp_path, name, layout):
    src = REAL_CHECKPOINTS[name][0]
    out = CliRunner().invoke(app, ["convert", str(src), str(tmp_path / "out"), "--to", layout, "--json"])
    assert out.exit_code == 0, out.output
    seed = _seed()
    result = verify_path(tmp_path / "out", against=src, backend="cupy", seed=seed)
    _assert_kernel_ran_and_passed(result, seed)
    assert all(m.run.backend == "cupy" and m.against.backend == "cupy" for m in result.modules)


@pytest.mark.parametrize("act_order,bf16", [(False, False), (True, False), (False, True)])
def test_reference_on_the_gpu_equals_numpy(act_order, bf16):
    """verify's float64 reference built and multiplied with cupy equals the numpy one (both float64: only the
    summation order differs), on a grouped, an act-order and a bf16-scale module."""
    import cupy

    from awqfmt.dtypes import from_float32
    from awqfmt.logical import LogicalModule
    from awqfmt.verify import reference_output

    rng = np.random.default_rng()
    K, N, G = 512, 96, 64
    codes = rng.integers(0, 16, (K, N), dtype=np.uint8)
    zeros = rng.integers(0, 16, (K // G, N)).astype(np.uint16)
    s = (rng.random((K // G, N)) * 0.02 + 0.001).astype(np.float32)
    scales, sd = (from_float32(s, "BF16"), "BF16") if bf16 else (s.astype(np.float16), "F16")
    g_idx = rng.permutation(np.arange(K) // G).astype(np.int32) if act_order else None
    module = LogicalModule(bits=4, group_size=G, codes=codes, zeros=zeros, scales=scales, scale_dtype=sd, g_idx=g_idx)
    x = rng.standard_normal((7, K)).astype(np.float16)
    cpu = reference_output(module, x)
    gpu = reference_output(module, x, cupy)
    assert isinstance(gpu, np.ndarray) and gpu.dtype == np.float64
    assert np.allclose(gpu, cpu, rtol=1e-12, atol=1e-12)
