"""Module rules (issue 2, section 5): each module complete, with spec shapes and dtypes; K, N, G, bits consistent
with the config; G divides K; config vs tensors layout; modules_to_not_convert. Each test copies a real
checkpoint, breaks one thing, and checks the finding, the tensor/module/file it names, and the exit status."""

import json

import numpy as np
import pytest

from craft import Raw, assert_finding, check_cli, codes, copy_fixture, edit_config, edit_model, findings
from conftest import REAL_CHECKPOINTS

AWQ = REAL_CHECKPOINTS["awq_tiny_llama"][0]
GPTQ4 = REAL_CHECKPOINTS["gptq_b4_g64_sym"][0]
UP = "model.layers.0.mlp.up_proj"
GATE = "model.layers.0.mlp.gate_proj"
K_PROJ = "model.layers.0.self_attn.k_proj"


@pytest.fixture
def awq(tmp_path):
    return copy_fixture(AWQ, tmp_path / "awq")


@pytest.fixture
def gptq(tmp_path):
    return copy_fixture(GPTQ4, tmp_path / "gptq")


def both_gptq_configs(d, fn):
    """GPTQ fixtures carry the config twice (config.json and quantize_config.json): edit both alike."""
    edit_config(d, fn)
    edit_config(d, fn, file="quantize_config.json")


def test_module_missing_a_tensor(awq):
    edit_model(awq, lambda r: r.drop(f"{UP}.qzeros"))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "module.missing-tensor", module=UP, tensor=f"{UP}.qzeros", file="model.safetensors")
    assert "qzeros" in f["message"] and status == 1


def test_module_shapes_that_fit_no_layout(awq):
    # scales claim N = 500: qweight's 64 words per row cannot hold 500 columns at any width the layout has
    edit_model(awq, lambda r: r.set(f"{GATE}.scales", np.ones((4, 500), np.float16)))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "module.shape", module=GATE, tensor=f"{GATE}.qweight")
    assert "[4, 500]" in f["message"] and status == 1


def test_module_dtype_outside_the_spec(awq):
    edit_model(awq, lambda r: r.set(f"{GATE}.qweight", r.get(f"{GATE}.qweight").view(np.uint32), "U32"))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "module.dtype", module=GATE, tensor=f"{GATE}.qweight")
    assert "U32" in f["message"] and "I32" in f["message"] and status == 1


def test_wrong_dtype_for_zeros_stops_value_rules_without_crashing(awq):
    edit_model(awq, lambda r: r.set(f"{GATE}.qzeros", r.get(f"{GATE}.qzeros").view(np.float32), "F32"))
    status, doc = check_cli(awq, "--deep")
    assert_finding(doc, "module.dtype", tensor=f"{GATE}.qzeros")
    assert status == 1


def test_config_bits_disagree_with_tensors(gptq):
    both_gptq_configs(gptq, lambda q: q.update(bits=8))
    status, doc = check_cli(gptq)
    f = assert_finding(doc, "module.config-bits", module=K_PROJ, tensor=f"{K_PROJ}.qweight")
    assert "4-bit" in f["message"] and "bits=8" in f["message"]
    assert len(findings(doc, "module.config-bits")) == doc["modules"] and status == 1


def test_config_bits_the_layout_does_not_have(awq):
    edit_config(awq, lambda q: q.update(bits=8))  # AWQ GEMM packs 4-bit only
    status, doc = check_cli(awq)
    assert_finding(doc, "module.config-bits", module=GATE)
    assert status == 1


def test_config_group_size_disagrees_with_tensors(awq):
    edit_config(awq, lambda q: q.update(group_size=128))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "module.config-group", module=GATE, tensor=f"{GATE}.scales")
    assert "group_size=128" in f["message"] and status == 1


def test_group_size_must_divide_k(awq):
    # keep 224 of gate_proj's 256 input rows: 224 = 3.5 groups of 64, scales/qzeros still 4 groups
    edit_model(awq, lambda r: r.set(f"{GATE}.qweight", r.get(f"{GATE}.qweight")[:224]))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "shape.group-divides-k", module=GATE, tensor=f"{GATE}.qweight")
    assert "K=224" in f["message"] and status == 1


def test_n_must_fill_whole_words(awq):
    # N = 508 columns still need 64 words per row, but the last word is part padding
    def cut(r):
        r.set(f"{GATE}.scales", r.get(f"{GATE}.scales")[:, :508])
    edit_model(awq, cut)
    status, doc = check_cli(awq)
    assert_finding(doc, "shape.n-multiple", module=GATE)
    assert status == 1


def test_config_and_tensors_name_different_layouts(awq):
    edit_config(awq, replace={"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": False, "sym": False,
                              "checkpoint_format": "gptq"})
    status, doc = check_cli(awq)
    f = assert_finding(doc, "layout.config-mismatch", file="config.json", severity="error")
    assert f["evidence"] == {"config": ["gptq"], "tensors": "awq"}
    assert doc["layout"]["detected"] == "awq" and doc["layout"]["config"] == "gptq" and status == 1


def test_one_module_in_another_layout(gptq):
    """A GPTQ checkpoint where one Linear was swapped for its AWQ-packed twin."""
    awq = Raw.read(AWQ / "model.safetensors")

    def swap(r):
        for short in ("qweight", "qzeros", "scales", "g_idx"):
            r.drop(f"{K_PROJ}.{short}")
        for short in ("qweight", "qzeros", "scales"):
            r.add(f"{K_PROJ}.{short}", awq.get(f"{K_PROJ}.{short}"), awq.dtype(f"{K_PROJ}.{short}"))
    edit_model(gptq, swap)
    status, doc = check_cli(gptq)
    f = assert_finding(doc, "layout.module-mismatch", module=K_PROJ, tensor=f"{K_PROJ}.qweight")
    assert "awq" in f["message"] and "gptq" in f["message"]
    assert len(findings(doc, "layout.module-mismatch")) == 1 and status == 1


def test_missing_group_size_that_the_default_gets_wrong(awq):
    edit_config(awq, lambda q: q.pop("group_size"))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "config.missing-field", file="config.json", severity="error")
    assert f["evidence"] == {"default": 128, "tensors": 64} and status == 1


def test_missing_bits_that_the_default_gets_right(awq):
    edit_config(awq, lambda q: q.pop("bits"))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.missing-field", file="config.json", severity="warning")
    assert status == 0


def test_no_quantization_config(awq):
    edit_config(awq, section=None, fn=lambda c: c.pop("quantization_config"))
    status, doc = check_cli(awq)
    assert_finding(doc, "config.missing", severity="warning")
    assert doc["layout"]["detected"] == "awq" and status == 0


def test_config_names_a_variant_no_spec_has(gptq):
    both_gptq_configs(gptq, lambda q: q.update(checkpoint_format="marlin"))
    status, doc = check_cli(gptq)
    assert_finding(doc, "config.unknown-layout", file="config.json")
    assert status == 1


def test_unquantized_checkpoint(tmp_path):
    from craft import safetensors_bytes
    (tmp_path / "model.safetensors").write_bytes(safetensors_bytes({"lm_head.weight": np.ones((8, 8), np.float16)}))
    status, doc = check_cli(tmp_path)
    assert_finding(doc, "checkpoint.no-quantized-modules", file="model.safetensors")
    assert status == 1


@pytest.mark.parametrize("pattern", ["up_proj", f"{UP}", "re:.*up_proj$", r"re:model\.layers\.0\.mlp\.up.*"])
def test_quantized_module_listed_as_not_to_convert(awq, pattern):
    edit_config(awq, lambda q: q.update(modules_to_not_convert=[pattern]))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "config.ignored-but-quantized", module=UP, severity="warning")
    assert repr(pattern) in f["message"] and status == 0
    assert "model.layers.0.mlp.gate_proj" not in {x["module"] for x in findings(doc, "config.ignored-but-quantized")}


def test_ignore_regex_awqfmt_will_not_run(awq):
    # a catastrophic-backtracking regex from a stranger's config is never evaluated
    edit_config(awq, lambda q: q.update(modules_to_not_convert=["re:(a|aa)+$", "lm_head"]))
    status, doc = check_cli(awq)
    f = assert_finding(doc, "config.ignore-pattern-skipped", severity="info")
    assert "(a|aa)+$" in f["message"] and status == 0
    assert "config.ignored-but-quantized" not in codes(doc)


def test_directory_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    status, doc = check_cli(tmp_path)
    assert_finding(doc, "checkpoint.no-safetensors", severity="error")
    assert status == 1


def _ct_with_8bit_down_proj(tmp_path):
    """The compressed-tensors fixture with both down_proj modules re-encoded at 8 bits (same codes and zeros:
    they fit), i.e. a real mixed-precision checkpoint."""
    from awqfmt.logical import decode, encode
    from awqfmt.spec import get_spec

    d = copy_fixture(REAL_CHECKPOINTS["ct_from_awq_tiny"][0], tmp_path / "ct")
    spec = get_spec("compressed-tensors")

    def to_8bit(raw):
        for layer in (0, 1):
            prefix = f"model.layers.{layer}.mlp.down_proj"
            tensors = {t.name: raw.get(f"{prefix}.{t.name}") for t in spec.tensors if f"{prefix}.{t.name}" in raw.names()}
            module = decode(spec, tensors, {k: raw.dtype(f"{prefix}.{k}") for k in tensors}, 4, 64)
            module.bits = 8
            for short, (array, dtype) in encode(spec, module).items():
                raw.set(f"{prefix}.{short}", array, dtype)
    edit_model(d, to_8bit)
    return d


def _groups(*groups):
    def edit(q):
        base = q["config_groups"]["config_group_0"]
        q["config_groups"] = {name: {**base, "targets": targets, "weights": {**base["weights"], "num_bits": bits}}
                              for name, targets, bits in groups}
    return edit


def test_mixed_precision_config_groups_are_checked_per_module(tmp_path):
    d = _ct_with_8bit_down_proj(tmp_path)
    edit_config(d, _groups(("w4", ["Linear"], 4), ("w8", ["re:.*down_proj"], 8)))
    status, doc = check_cli(d)
    assert status == 0 and not codes(doc, "error"), codes(doc)
    assert_finding(doc, "config.mixed-groups", file="config.json", severity="info")


def test_a_module_quantized_against_its_config_group_is_named(tmp_path):
    d = _ct_with_8bit_down_proj(tmp_path)
    edit_config(d, _groups(("w4", ["Linear"], 4), ("w8", ["re:.*up_proj"], 8)))  # wrong modules in the 8-bit group
    status, doc = check_cli(d)
    wrong = sorted(f["module"] for f in findings(doc, "module.config-bits"))
    assert wrong == ["model.layers.0.mlp.down_proj", "model.layers.0.mlp.up_proj",
                     "model.layers.1.mlp.down_proj", "model.layers.1.mlp.up_proj"]
    assert status == 1


def test_a_quantized_module_no_config_group_targets(tmp_path):
    d = copy_fixture(REAL_CHECKPOINTS["ct_from_awq_tiny"][0], tmp_path / "ct")
    edit_config(d, _groups(("attn", ["re:.*self_attn.*"], 4)))
    status, doc = check_cli(d)
    untargeted = sorted(f["module"] for f in findings(doc, "config.module-untargeted"))
    assert untargeted == [f"model.layers.{i}.mlp.{p}" for i in (0, 1) for p in ("down_proj", "gate_proj", "up_proj")]
    assert status == 1


def test_gptq_group_size_must_divide_k(gptq):
    # GPTQ packs along K: keep 224 of gate_proj's 256 input rows (28 packed rows) with its 4 groups of 64
    def cut(r):
        r.set(f"{GATE}.qweight", r.get(f"{GATE}.qweight")[:28])
        r.set(f"{GATE}.g_idx", r.get(f"{GATE}.g_idx")[:224])
    edit_model(gptq, cut)
    status, doc = check_cli(gptq)
    f = assert_finding(doc, "shape.group-divides-k", module=GATE)
    assert "K=224" in f["message"] and status == 1


def test_convert_refuses_to_flatten_mixed_precision_but_dequantizes_it(tmp_path):
    from typer.testing import CliRunner

    from awqfmt.cli import app
    from awqfmt.verify import verify_path

    d = _ct_with_8bit_down_proj(tmp_path)
    edit_config(d, _groups(("w4", ["Linear"], 4), ("w8", ["re:.*down_proj"], 8)))
    runner = CliRunner()
    refused = runner.invoke(app, ["convert", str(d), str(tmp_path / "gptq"), "--to", "gptq-v2", "--json"])
    assert refused.exit_code == 1 and not (tmp_path / "gptq").exists()
    assert [f["code"] for f in json.loads(refused.stdout)["findings"]] == ["convert.mixed-precision"]
    dense = runner.invoke(app, ["convert", str(d), str(tmp_path / "fp16"), "--to", "fp16"])
    assert dense.exit_code == 0, dense.output
    assert verify_path(d, against=tmp_path / "fp16", backend="numpy").ok  # 8-bit and 4-bit modules all decoded right
