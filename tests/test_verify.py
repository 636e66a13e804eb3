"""`awqfmt verify`: the numpy backend against the oracle, every fixture, conversions, deliberate damage, the CLI."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from awqfmt import dtypes
from awqfmt.cli import app
from awqfmt.logical import LogicalModule, encode
from awqfmt.spec import all_specs, get_spec
from awqfmt.verify import TOLERANCE, activations, verify_path
from awqfmt.verify_backends import NumpyBackend, numpy_packed_gemm

from conftest import REAL_CHECKPOINTS
from verify_support import only, repack_in_order, write_layout, write_safetensors

AWQ_ORDER = get_spec("awq").packing(4).order
NATURAL = tuple(range(8))
TINY = REAL_CHECKPOINTS["awq_tiny_llama"][0]
MINILM = REAL_CHECKPOINTS["minilm_awq_g128"][0]
runner = CliRunner()


# ---- the numpy backend computes from the stored words, and agrees with the oracle ---------------------------

def _random_module(rng, K, N, bits, group, scale_dtype, act_order):
    g = K if group == -1 else group
    n_g = -(-K // g)
    g_idx = rng.permutation(np.arange(K, dtype=np.int32) // g).astype(np.int32) if act_order else None
    scales = dtypes.from_float32(rng.uniform(0.001, 0.02, (n_g, N)).astype(np.float32), scale_dtype)
    return LogicalModule(bits=bits, group_size=group, codes=rng.integers(0, 1 << bits, (K, N), dtype=np.uint8),
                         zeros=rng.integers(1, 1 << bits, (n_g, N)).astype(np.uint16), scales=scales,
                         scale_dtype=scale_dtype, g_idx=g_idx, symmetric=False)


def _cases():
    rng = np.random.default_rng(7)
    for spec in all_specs().values():
        for bits in spec.bits:
            for group in (32, 64, 128, -1):
                K = 384 if bits != 3 else 416  # 3-bit GPTQ blocks hold 32 values; 416 = 13 blocks
                N = 96 if spec.name not in ("compressed-tensors", "unpacked") else 90  # 90: a partly filled last word
                act = spec.g_idx != "none" and group != -1 and rng.random() < 0.5
                yield spec.name, bits, K, N, group, ["F16", "BF16", "F32"][int(rng.integers(3))], act


@pytest.mark.parametrize("layout,bits,K,N,group,scale_dtype,act", list(_cases()))
def test_numpy_backend_equals_float64_oracle(layout, bits, K, N, group, scale_dtype, act):
    spec = get_spec(layout)
    rng = np.random.default_rng([bits, K, N, group + 2, int(act)])
    if K % (K if group == -1 else group) and any("G == -1 or K % G == 0" in i.expr for i in spec.invariants):
        pytest.skip("group does not divide K")
    module = _random_module(rng, K, N, bits, group, scale_dtype, act)
    stored = encode(spec, module)
    tensors = {k: a for k, (a, _) in stored.items()}
    names = {k: dt for k, (_, dt) in stored.items()}
    x = rng.standard_normal((5, K)).astype(np.float16)
    y = numpy_packed_gemm(spec, tensors, names, bits, group, x)
    ref = x.astype(np.float64) @ module.dequantize(np.float64)
    assert y.shape == (5, N)
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 1e-5


def test_numpy_backend_reads_the_field_order_from_the_words():
    """AWQ words read with the natural-order spec give a different product: the backend does not just reuse
    the logical decode, so a wrong layout label or a mis-packed tensor shows up."""
    rng = np.random.default_rng(1)
    module = _random_module(rng, 256, 64, 4, 64, "F16", False)
    stored = encode(get_spec("awq"), module)
    tensors = {k: a for k, (a, _) in stored.items()}
    names = {k: dt for k, (_, dt) in stored.items()}
    x = rng.standard_normal((4, 256)).astype(np.float16)
    ref = x.astype(np.float64) @ module.dequantize(np.float64)
    right = numpy_packed_gemm(get_spec("awq"), tensors, names, 4, 64, x)
    wrong = numpy_packed_gemm(get_spec("logical"), tensors, names, 4, 64, x)
    assert np.linalg.norm(right - ref) / np.linalg.norm(ref) < 1e-5
    assert np.linalg.norm(wrong - ref) / np.linalg.norm(ref) > 0.3


def test_activations_are_seeded_per_module_name_and_seed():
    a = activations("model.layers.0.mlp.up_proj", 64, 4, 0)
    assert a.dtype == np.float16 and a.shape == (4, 64)
    assert np.array_equal(a, activations("model.layers.0.mlp.up_proj", 64, 4, 0))
    assert not np.array_equal(a, activations("model.layers.0.mlp.up_proj", 64, 4, 1))
    assert not np.array_equal(a, activations("model.layers.1.mlp.up_proj", 64, 4, 0))


# ---- every real fixture --------------------------------------------------------------------------------------

def test_verify_passes_on_every_fixture(real_checkpoint):
    name, path, layout, bits, group = real_checkpoint
    result = verify_path(path, backend="numpy")
    assert result.ok, [f.message for f in result.findings]
    assert result.backend == "numpy" and len(result.modules) == {"minilm_awq_g128": 37}.get(name, 14)
    for m in result.modules:
        assert (m.run.layout, m.run.bits, m.run.group_size) == (layout, bits, group)
        assert m.run.backend == "numpy" and m.run.check.nonfinite == 0
        assert m.run.check.rel_err < 1e-5  # float32 products of the stored words vs float64


def test_ct_fixture_verifies_against_its_awq_source():
    result = verify_path(REAL_CHECKPOINTS["ct_from_awq_tiny"][0], against=TINY, backend="numpy")
    assert result.ok and len(result.modules) == 14
    assert all(m.against.layout == "awq" and m.outputs.rel_err < 1e-6 for m in result.modules)


# ---- conversions and deliberate damage -------------------------------------------------------------------------

@pytest.mark.parametrize("src_name,layout", [
    ("minilm_awq_g128", "logical"), ("minilm_awq_g128", "gptq-v2"), ("minilm_awq_g128", "compressed-tensors"),
    ("awq_tiny_llama", "gptq"), ("awq_tiny_llama", "unpacked"), ("gptq_b4_g64_asym_act", "compressed-tensors"),
    ("gptq_b3_g128_asym", "gptq-v2"), ("gptq_b8_gall_sym", "compressed-tensors"), ("gptq_b4_g64_sym", "awq"),
])
def test_verify_passes_on_conversions(tmp_path, src_name, layout):
    src = REAL_CHECKPOINTS[src_name][0]
    dst = write_layout(src, tmp_path / "out", layout)
    result = verify_path(dst, against=src, backend="numpy")
    assert result.ok, [f.message for f in result.findings]
    assert {m.run.layout for m in result.modules} == {layout}
    assert all(m.outputs.rel_err < 1e-5 and m.against.check.ok for m in result.modules)


@pytest.mark.parametrize("layout,role,wrong", [("awq", "zeros", NATURAL), ("gptq-v2", "zeros", AWQ_ORDER),
                                               ("logical", "codes", AWQ_ORDER)])
def test_one_module_packed_in_the_wrong_order_is_caught(tmp_path, layout, role, wrong):
    bad_module = "model.layers.1.mlp.down_proj"
    dst = write_layout(TINY, tmp_path / "bad", layout, damage=only(bad_module, repack_in_order(layout, role, wrong)))
    alone = verify_path(dst, backend="numpy")  # the damaged file is self-consistent: only a comparison can tell
    assert alone.ok
    result = verify_path(dst, against=TINY, backend="numpy")
    assert not result.ok
    assert result.failed_modules == [bad_module]
    bad = [f for f in result.findings if f.severity.value == "error"]
    assert [(f.code, f.module) for f in bad] == [("verify.against-mismatch", bad_module)]
    assert [m for m in result.modules if m.name == bad_module][0].outputs.rel_err > 0.05

    out = runner.invoke(app, ["verify", str(dst), "--against", str(TINY), "--backend", "numpy", "--json"])
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert doc["summary"] == {"modules": 14, "passed": 13, "failed": 1, "errors": 1, "ok": False}
    assert [m["name"] for m in doc["modules"] if not m["ok"]] == [bad_module]
    text = runner.invoke(app, ["verify", str(dst), "--against", str(TINY), "--backend", "numpy"], terminal_width=200)
    assert text.exit_code == 1 and "verify.against-mismatch" in text.stdout and bad_module in text.stdout


def test_gptq_v1_labelled_v2_is_caught_against_the_original(tmp_path):
    src = REAL_CHECKPOINTS["gptq_b4_g64_sym"][0]
    dst = tmp_path / "relabelled"
    shutil.copytree(src, dst)
    for fname in ("config.json", "quantize_config.json"):
        doc = json.loads((dst / fname).read_text())
        target = doc.get("quantization_config", doc)
        target["checkpoint_format"] = "gptq_v2"
        (dst / fname).write_text(json.dumps(doc))
    result = verify_path(dst, against=src, backend="numpy")
    assert {m.run.layout for m in result.modules} == {"gptq-v2"}
    assert len(result.failed_modules) == 14
    assert {f.code for f in result.findings} == {"verify.against-mismatch"}


def test_missing_modules_on_either_side(tmp_path):
    gone = "model.layers.0.self_attn.k_proj"
    dst = write_layout(TINY, tmp_path / "dropped", "gptq-v2", drop=(gone,))
    forward = verify_path(TINY, against=dst, backend="numpy")
    assert forward.missing_in_against == [gone] and forward.failed_modules == [gone]
    assert [(f.code, f.module) for f in forward.findings] == [("verify.missing-module", gone)]
    backward = verify_path(dst, against=TINY, backend="numpy")
    assert backward.missing_in_checkpoint == [gone] and backward.failed_modules == []
    assert [(f.code, f.module) for f in backward.findings] == [("verify.missing-module", gone)]
    assert not backward.ok


@pytest.mark.parametrize("dense", ["F16", "F32"])
def test_against_a_dense_conversion(tmp_path, dense):
    dst = write_layout(MINILM, tmp_path / "dense", "awq", dense=dense)
    result = verify_path(MINILM, against=dst, backend="numpy")
    assert result.ok, [f.message for f in result.findings]
    assert {m.against.layout for m in result.modules} == {f"dense-{dense}"}
    assert max(m.outputs.rel_err for m in result.modules) < (5e-4 if dense == "F16" else 1e-6)


def test_dense_weight_of_the_wrong_shape(tmp_path):
    dst = write_layout(TINY, tmp_path / "dense", "awq", dense="F16")
    path = dst / "model.safetensors"
    from safetensors.numpy import load_file
    t = load_file(str(path))
    name = "model.layers.0.mlp.gate_proj"
    t[f"{name}.weight"] = np.ascontiguousarray(t[f"{name}.weight"].T)
    write_safetensors(path, {k: (v, "F16") for k, v in t.items()})
    result = verify_path(TINY, against=dst, backend="numpy")
    assert [(f.code, f.module) for f in result.findings] == [("verify.shape-mismatch", name)]


# ---- a wrong backend is caught ---------------------------------------------------------------------------------

class _Skewed(NumpyBackend):
    name = "skewed"

    def __init__(self, fn):
        self.fn = fn

    def gemm(self, spec, tensors, dtype_names, bits, group_size, x):
        return self.fn(super().gemm(spec, tensors, dtype_names, bits, group_size, x))


def test_a_kernel_off_by_more_than_the_tolerance_fails():
    def skew(y):
        return y * np.float32(1 + 3 * TOLERANCE)
    result = verify_path(TINY, backend=_Skewed(skew))
    assert len(result.failed_modules) == 14 and {f.code for f in result.findings} == {"verify.kernel-mismatch"}
    assert all(2.9 * TOLERANCE < m.run.check.rel_err < 3.1 * TOLERANCE for m in result.modules)
    ok = verify_path(TINY, backend=_Skewed(lambda y: y * np.float32(1 + TOLERANCE / 2)))
    assert ok.ok


def test_a_single_nan_fails():
    def poison(y):
        y = y.copy()
        y[0, 0] = np.nan
        return y
    result = verify_path(TINY, backend=_Skewed(poison))
    assert {f.code for f in result.findings} == {"verify.nonfinite"}
    assert all(m.run.check.nonfinite == 1 for m in result.modules)
    doc = result.to_json()
    json.dumps(doc, allow_nan=False)  # NaN errors are written as null
    assert doc["modules"][0]["run"]["check"]["rel_err"] is None


# ---- bad input and usage ---------------------------------------------------------------------------------------

def test_truncated_file_is_reported_not_raised(tmp_path):
    dst = tmp_path / "cut"
    shutil.copytree(TINY, dst)
    f = dst / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    result = verify_path(dst, backend="numpy")
    codes = {f.code for f in result.findings}
    assert not result.ok and "tensor.out-of-bounds" in codes and "verify.undecodable" in codes
    out = runner.invoke(app, ["verify", str(dst), "--backend", "numpy"])
    assert out.exit_code == 1 and "Traceback" not in out.output


def test_unquantized_checkpoint_has_no_modules(tmp_path):
    write_safetensors(tmp_path / "model.safetensors", {"w.weight": (np.ones((4, 4), np.float16), "F16")})
    result = verify_path(tmp_path, backend="numpy")
    assert [f.code for f in result.findings] == ["verify.no-modules"]


@pytest.mark.parametrize("args,message", [
    (["/no/such/dir"], "no such file"),
    ([str(TINY), "--against", "/no/such/other"], "no such file"),
    ([str(TINY), "--reference", "/no/such/orig"], "no such file"),
    ([str(TINY), "--tokens", "0"], "--tokens"),
    ([str(TINY), "--backend", "tpu"], "--backend"),
])
def test_usage_errors_exit_2(args, message):
    out = runner.invoke(app, ["verify", *args])
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output


def test_backend_cupy_without_gpu_is_a_usage_error(monkeypatch):
    import awqfmt.verify_backends as vb
    monkeypatch.setattr(vb, "gpu_available", lambda: False)
    out = runner.invoke(app, ["verify", str(TINY), "--backend", "cupy"])
    assert out.exit_code == 2 and "needs CuPy and an NVIDIA GPU" in out.output and "Traceback" not in out.output
    auto = runner.invoke(app, ["verify", str(TINY), "--json"])
    doc = json.loads(auto.stdout)
    assert auto.exit_code == 0 and doc["backend"] == {"requested": "auto", "used": "numpy"}
    assert any("numpy backend instead" in n for n in doc["notes"])


def test_cli_table_and_json(tmp_path):
    out = runner.invoke(app, ["verify", str(TINY), "--backend", "numpy", "--tokens", "3", "--seed", "5"], terminal_width=160)
    assert out.exit_code == 0
    assert "14 of 14 module(s) passed" in out.stdout and "model.layers.1.mlp.down_proj" in out.stdout
    doc = json.loads(runner.invoke(app, ["verify", str(TINY), "--backend", "numpy", "--json", "--tokens", "3"]).stdout)
    assert set(doc) == {"path", "against", "reference", "backend", "tokens", "seed", "tolerance", "notes", "elapsed_s",
                        "modules", "missing", "findings", "summary"}
    m = doc["modules"][0]
    assert set(m["run"]) == {"layout", "bits", "K", "N", "group_size", "backend", "time_s", "check"}
    assert set(m["run"]["check"]) == {"max_abs_err", "rel_err", "nonfinite", "ok"}
    assert doc["tokens"] == 3 and doc["summary"]["ok"] is True


def test_g_idx_out_of_range_is_reported_not_raised(tmp_path):
    bad = "model.layers.0.mlp.up_proj"

    def damage(name, module, encoded):
        if name == bad:
            g, dt = encoded["g_idx"]
            g = g.copy()
            g[3] = 10_000
            encoded["g_idx"] = (g, dt)
    dst = write_layout(TINY, tmp_path / "gidx", "gptq-v2", damage=damage)
    result = verify_path(dst, backend="numpy")
    assert [(f.code, f.module) for f in result.findings] == [("verify.undecodable", bad)]
    assert "g_idx values span" in result.findings[0].message


def test_a_backend_that_cannot_run_a_module_falls_back_to_numpy_with_a_warning():
    from awqfmt.verify_backends import BackendCannotRun

    class Picky(NumpyBackend):
        name = "picky"
        warm_up = True
        calls = 0

        def gemm(self, spec, tensors, dtype_names, bits, group_size, x):
            Picky.calls += 1
            if tensors["qweight"].shape[0] == 512:  # the down_proj modules (K = 512)
                raise BackendCannotRun("no kernel for K = 512")
            return super().gemm(spec, tensors, dtype_names, bits, group_size, x)

    result = verify_path(TINY, backend=Picky())
    assert result.ok
    fell_back = sorted(m.name for m in result.modules if m.run.backend == "numpy")
    assert fell_back == ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert sorted(f.module for f in result.findings if f.code == "verify.backend-fallback") == fell_back
    assert all(f.severity.value == "warning" for f in result.findings)
    assert Picky.calls == 12 * 2 + 2  # warm-up + timed call on the 12 it runs, one refused call each on the other 2


def test_a_kernel_that_fails_to_launch_is_an_error_not_a_silent_fallback():
    from awqfmt.verify_backends import BackendFailed

    class Broken(NumpyBackend):
        name = "broken"

        def gemm(self, spec, tensors, dtype_names, bits, group_size, x):
            if tensors["qweight"].shape[0] == 512:  # the down_proj modules (K = 512)
                raise BackendFailed("launching w4a16_gemm failed: cudaErrorIllegalAddress")
            return super().gemm(spec, tensors, dtype_names, bits, group_size, x)

    result = verify_path(TINY, backend=Broken())
    assert not result.ok
    failed = ["model.layers.0.mlp.down_proj", "model.layers.1.mlp.down_proj"]
    assert result.failed_modules == failed
    errors = [(f.code, f.module) for f in result.findings if f.severity.value == "error"]
    assert errors == [("verify.kernel-failed", m) for m in failed]
    assert all(m.run.backend == "numpy" for m in result.modules if m.name in failed)  # still judged on numpy


def test_inf_scale_is_reported_as_a_nonfinite_reference(tmp_path):
    bad = "model.layers.0.self_attn.q_proj"

    def damage(name, module, encoded):
        if name == bad:
            s, dt = encoded["scales"]
            s = s.copy()
            s[0, 5] = np.inf
            encoded["scales"] = (s, dt)
    dst = write_layout(TINY, tmp_path / "inf", "awq", damage=damage)
    result = verify_path(dst, backend="numpy")
    assert [(f.code, f.module) for f in result.findings] == [("verify.reference-nonfinite", bad)]
    json.dumps(result.to_json(), allow_nan=False)
