"""Value rules (issue 2, section 5): scales finite and > 0 (fp16 and bf16), g_idx range / group sizes /
act-order vs desc_act, GPTQ v1 vs v2 zero convention, v1 all-ones fields and AutoGPTQ packer corruption,
pack order of qzeros vs qweight, and --deep's round trip / unused bits. Crafted from real checkpoints."""

import json

import numpy as np
import pytest

from awqfmt import dtypes
from awqfmt.logical import decode, encode
from awqfmt.packing import pack, unpack
from awqfmt.spec import get_spec
from craft import NP_DTYPE, Raw, assert_finding, check_cli, codes, copy_fixture, edit_config, edit_model, findings, module_names
from conftest import REAL_CHECKPOINTS

AWQ = REAL_CHECKPOINTS["awq_tiny_llama"][0]
MINILM = REAL_CHECKPOINTS["minilm_awq_g128"][0]
GATE = "model.layers.0.mlp.gate_proj"
K_PROJ = "model.layers.0.self_attn.k_proj"


def copy(name, tmp_path):
    return copy_fixture(REAL_CHECKPOINTS[name][0], tmp_path / name)


def gptq_configs(d, **values):
    for file in ("config.json", "quantize_config.json"):
        edit_config(d, lambda q: q.update(values), file=file)


# ---- scales ---------------------------------------------------------------------------------------------

def to_bf16(raw: Raw, name: str):
    """Store a real fp16 scales tensor as bf16 (bf16 scales exist in the wild)."""
    f32 = dtypes.to_float32(raw.get(name), "F16")
    raw.set(name, dtypes.from_float32(f32, "BF16"), "BF16")


@pytest.mark.parametrize("dtype", ["F16", "BF16", "F32"])
def test_clean_scales_in_every_float_dtype(tmp_path, dtype):
    d = copy("awq_tiny_llama", tmp_path)
    if dtype == "BF16":
        edit_model(d, lambda r: to_bf16(r, f"{GATE}.scales"))
    elif dtype == "F32":
        edit_model(d, lambda r: r.set(f"{GATE}.scales", r.get(f"{GATE}.scales").astype(np.float32)))
    status, doc = check_cli(d)
    assert status == 0 and doc["findings"] == []


# bit patterns: (inf, nan, -0.5, +0) per dtype
SPECIAL = {"F16": (0x7C00, 0x7E00, 0xB800, 0x0000), "BF16": (0x7F80, 0x7FC0, 0xBF00, 0x0000)}


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_scales_not_finite(tmp_path, dtype):
    d = copy("awq_tiny_llama", tmp_path)
    inf, nan, _, _ = SPECIAL[dtype]

    def poison(r):
        if dtype == "BF16":
            to_bf16(r, f"{GATE}.scales")
        s = r.get(f"{GATE}.scales").view(np.uint16)
        s[0, 0], s[3, 511] = inf, nan
        r.set(f"{GATE}.scales", s.view(NP_DTYPE[dtype]), dtype)
    edit_model(d, poison)
    status, doc = check_cli(d)
    f = assert_finding(doc, "values.scale-nonfinite", module=GATE, tensor=f"{GATE}.scales", file="model.safetensors")
    assert f["evidence"]["count"] == 2 and status == 1
    assert "values.scale-nonpositive" not in codes(doc)  # NaN/inf are counted once, as non-finite


@pytest.mark.parametrize("dtype", ["F16", "BF16"])
def test_scales_not_positive(tmp_path, dtype):
    d = copy("awq_tiny_llama", tmp_path)
    _, _, neg, zero = SPECIAL[dtype]

    def poison(r):
        if dtype == "BF16":
            to_bf16(r, f"{GATE}.scales")
        s = r.get(f"{GATE}.scales").view(np.uint16)
        s[1, 7], s[2, 8], s[2, 9] = neg, zero, 0x8000  # -0.5, +0, -0
        r.set(f"{GATE}.scales", s.view(NP_DTYPE[dtype]), dtype)
    edit_model(d, poison)
    status, doc = check_cli(d)
    f = assert_finding(doc, "values.scale-nonpositive", module=GATE, tensor=f"{GATE}.scales")
    assert f["evidence"]["count"] == 3 and status == 1


def test_f32_scales_not_finite(tmp_path):
    d = copy("awq_tiny_llama", tmp_path)

    def poison(r):
        s = r.get(f"{GATE}.scales").astype(np.float32)
        s[0, 0] = np.inf
        r.set(f"{GATE}.scales", s)
    edit_model(d, poison)
    status, doc = check_cli(d)
    assert_finding(doc, "values.scale-nonfinite", tensor=f"{GATE}.scales")
    assert status == 1


# ---- g_idx ----------------------------------------------------------------------------------------------

def test_g_idx_out_of_range(tmp_path):
    d = copy("gptq_b4_g64_sym", tmp_path)

    def poison(r):
        g = r.get(f"{K_PROJ}.g_idx")
        g[10] = 4  # K = 256, group 64: 4 groups, valid indices 0..3
        r.set(f"{K_PROJ}.g_idx", g)
    edit_model(d, poison)
    status, doc = check_cli(d)
    f = assert_finding(doc, "values.g-idx-range", module=K_PROJ, tensor=f"{K_PROJ}.g_idx")
    assert "[0, 4]" in f["message"] and status == 1


def test_g_idx_group_used_the_wrong_number_of_times(tmp_path):
    d = copy("gptq_b4_g64_asym_act", tmp_path)
    gptq_configs(d, desc_act=True)

    def poison(r):
        g = r.get(f"{K_PROJ}.g_idx")
        g[np.nonzero(g == 1)[0][0]] = 0  # group 0 now covers 65 channels, group 1 only 63
        r.set(f"{K_PROJ}.g_idx", g)
    edit_model(d, poison)
    status, doc = check_cli(d)
    f = assert_finding(doc, "values.g-idx-count", module=K_PROJ, tensor=f"{K_PROJ}.g_idx")
    assert "min 63, max 65" in f["message"] and status == 1


def test_g_idx_act_order_while_config_says_desc_act_false(tmp_path):
    d = copy("gptq_b4_g64_asym_act", tmp_path)
    gptq_configs(d, desc_act=False)
    status, doc = check_cli(d)
    assert_finding(doc, "values.g-idx-act-order", module=K_PROJ, tensor=f"{K_PROJ}.g_idx")
    assert len(findings(doc, "values.g-idx-act-order")) == doc["modules"] and status == 1


def test_trivial_g_idx_with_desc_act_true_is_fine(tmp_path):
    d = copy("gptq_b4_g64_sym", tmp_path)
    gptq_configs(d, desc_act=True)
    status, doc = check_cli(d)
    assert status == 0 and not codes(doc, "error")


# ---- GPTQ v1 vs v2 zero convention ---------------------------------------------------------------------

def fill_qzeros(r: Raw, word: int):
    for n in module_names(r, "qzeros"):
        r.set(n, np.full(r.get(n).shape, word, dtype=np.uint32).view(np.int32), "I32")


@pytest.mark.parametrize("fixture, word", [("gptq_b4_g64_sym", 0x88888888), ("gptq_b8_gall_sym", 0x80808080)])
def test_v1_label_with_v2_zeros(tmp_path, fixture, word):
    """The vLLM#38966 bug: a file labelled v1 whose symmetric zeros were written in the v2 convention."""
    d = copy(fixture, tmp_path)
    edit_model(d, lambda r: fill_qzeros(r, word))
    status, doc = check_cli(d)
    f = assert_finding(doc, "zeros.v1-v2-mismatch", module=K_PROJ, tensor=f"{K_PROJ}.qzeros", file="model.safetensors")
    assert "gptq-v2 convention" in f["message"] and "gptq_v2" in f["hint"]
    assert len(findings(doc, "zeros.v1-v2-mismatch")) == doc["modules"] and status == 1


def test_v2_label_with_v1_zeros(tmp_path):
    d = copy("gptq_b4_g64_sym", tmp_path)  # real v1 zeros 0x77777777
    gptq_configs(d, checkpoint_format="gptq_v2")
    status, doc = check_cli(d)
    assert doc["layout"]["config"] == "gptq-v2"
    f = assert_finding(doc, "zeros.v1-v2-mismatch", module=K_PROJ, tensor=f"{K_PROJ}.qzeros")
    assert "gptq convention" in f["message"] and status == 1


def test_v2_label_with_v2_zeros_is_clean(tmp_path):
    d = copy("gptq_b4_g64_sym", tmp_path)
    gptq_configs(d, checkpoint_format="gptq_v2")
    edit_model(d, lambda r: fill_qzeros(r, 0x88888888))
    status, doc = check_cli(d)
    assert status == 0 and not codes(doc, "error"), doc["findings"][:3]


def test_v1_3bit_label_with_v2_zeros(tmp_path):
    """3-bit: 32 fields over 3 words; the v2 symmetric zero 4 packs to a constant field pattern too."""
    d = copy("gptq_b3_g128_asym", tmp_path)
    p = get_spec("gptq-v2").packing(3)

    def v2_sym(r):
        for n in module_names(r, "qzeros"):
            n_g, words = r.get(n).shape
            r.set(n, pack(np.full((n_g, words // 3 * 32), 4, np.uint8), p, axis=1))
    edit_model(d, v2_sym)
    status, doc = check_cli(d)
    assert_finding(doc, "zeros.v1-v2-mismatch", module=K_PROJ, tensor=f"{K_PROJ}.qzeros")
    assert status == 1


def set_word(r: Raw, name: str, row: int, col: int, word: int):
    w = r.get(name).view(np.uint32)
    w[row, col] = word
    r.set(name, w.view(np.int32), "I32")


def test_v1_all_ones_field_is_a_warning(tmp_path):
    # lowest field 0xF (zero 16 for kernels, 0 for masking readers), the higher fields intact: not the packer bug
    d = copy("gptq_b4_g64_sym", tmp_path)
    edit_model(d, lambda r: set_word(r, f"{K_PROJ}.qzeros", 0, 0, 0x7777777F))
    status, doc = check_cli(d)
    f = assert_finding(doc, "zeros.v1-all-ones", module=K_PROJ, tensor=f"{K_PROJ}.qzeros", severity="warning")
    assert f["evidence"]["count"] == 1 and status == 0


def test_v1_packer_corruption(tmp_path):
    # zero 0 at field 3 packed as -1: fields 3..7 all ones, exactly what AutoGPTQ's v1 packer writes
    d = copy("gptq_b4_g64_sym", tmp_path)
    edit_model(d, lambda r: set_word(r, f"{K_PROJ}.qzeros", 2, 5, 0xFFFFF777))
    status, doc = check_cli(d)
    f = assert_finding(doc, "zeros.v1-packer-corruption", module=K_PROJ, tensor=f"{K_PROJ}.qzeros", severity="error")
    assert f["evidence"]["words"] == 1 and f["evidence"]["all_ones_fields"] == 5 and status == 1


def test_real_autogptq_packer_corruption_is_found_in_every_module():
    status, doc = check_cli(REAL_CHECKPOINTS["gptq_b2_g32_asym"][0])
    hits = findings(doc, "zeros.v1-packer-corruption")
    assert len(hits) == doc["modules"] and status == 1
    assert all(h["tensor"] == h["module"] + ".qzeros" and h["evidence"]["words"] > 0 for h in hits)


# ---- pack order of qzeros vs qweight ---------------------------------------------------------------------

def natural_order_qzeros(r: Raw, only: str | None = None):
    """Repack qzeros in natural field order while qweight stays AWQ-interleaved (the bug the rule catches)."""
    awq, logical = get_spec("awq").packing(4), get_spec("logical").packing(4)
    for n in module_names(r, "qzeros"):
        if only is None or n == f"{only}.qzeros":
            r.set(n, pack(unpack(r.get(n), awq, axis=1), logical, axis=1))


def test_order_zeros_vs_weights_on_real_minilm(tmp_path):
    d = copy("minilm_awq_g128", tmp_path)
    edit_model(d, natural_order_qzeros)
    status, doc = check_cli(d)
    hits = findings(doc, "order.zeros-vs-weights")
    assert len(hits) == doc["modules"] == 37 and status == 1
    stored = [h["evidence"]["stored_order_pct"] for h in hits]
    best = [h["evidence"]["best_order_pct"] for h in hits]
    # the numbers: >= 99.8 % in the right order, 66-84 % with qzeros natural and qweight interleaved
    assert 66 <= min(stored) and max(stored) <= 84
    assert min(best) >= 99.8
    assert all(h["evidence"]["best_order"] == list(range(8)) and h["tensor"] == h["module"] + ".qzeros" for h in hits)


def test_order_zeros_vs_weights_names_the_one_bad_module(tmp_path):
    d = copy("awq_tiny_llama", tmp_path)
    edit_model(d, lambda r: natural_order_qzeros(r, only=GATE))
    status, doc = check_cli(d)
    f = assert_finding(doc, "order.zeros-vs-weights", module=GATE, tensor=f"{GATE}.qzeros", file="model.safetensors")
    assert f["evidence"]["stored_order_pct"] < 60 <= 99 < f["evidence"]["best_order_pct"]
    assert len(findings(doc, "order.zeros-vs-weights")) == 1 and status == 1


# ---- --deep: round trip and unused bits ----------------------------------------------------------------------

def test_deep_is_clean_on_every_real_checkpoint(real_checkpoint):
    name, path, *_ = real_checkpoint
    status, doc = check_cli(path, "--deep")
    assert not ({"values.roundtrip", "values.padding-nonzero"} & codes(doc))
    assert status == (1 if name == "gptq_b2_g32_asym" else 0)


def ct_3bit_checkpoint(d):
    """A compressed-tensors 3-bit checkpoint (10 fields per word, 2 spare bits; K=256 leaves 4 padding fields in
    the last word) made from the real AutoAWQ module's codes, written by awqfmt's encoder."""
    awq = get_spec("awq")
    raw = Raw.read(AWQ / "model.safetensors")
    stored = {s: raw.get(f"{GATE}.{s}") for s in ("qweight", "qzeros", "scales")}
    m = decode(awq, stored, {"qweight": "I32", "qzeros": "I32", "scales": "F16"}, 4, 64)
    m.bits, m.codes, m.zeros, m.symmetric = 3, m.codes >> 1, m.zeros >> 1, None
    out = Raw({}, bytearray())
    for short, (array, dtype) in encode(get_spec("compressed-tensors"), m).items():
        out.add(f"{GATE}.{short}", array, dtype)
    d.mkdir()
    out.save(d / "model.safetensors")
    (d / "config.json").write_text(json.dumps({"quantization_config": {
        "quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 3, "group_size": 64, "symmetric": False,
                                                                            "strategy": "group", "type": "int"}}}}}))
    return d


def test_deep_unused_bits_set(tmp_path):
    d = ct_3bit_checkpoint(tmp_path / "ct3")
    status, doc = check_cli(d, "--deep")
    assert status == 0 and doc["findings"] == [] and doc["layout"]["bits"] == 3

    def dirty(r):
        w = r.get(f"{GATE}.weight_packed").view(np.uint32)
        w[5, 3] |= 1 << 31  # a spare bit of a 10-in-32 word
        w[7, 25] |= 0b111 << 18  # a padding field past K in the last word of a row
        r.set(f"{GATE}.weight_packed", w.view(np.int32), "I32")
    edit_model(d, dirty)
    status, doc = check_cli(d)
    assert status == 0 and "values.padding-nonzero" not in codes(doc)  # only --deep reads every word
    status, doc = check_cli(d, "--deep")
    f = assert_finding(doc, "values.padding-nonzero", module=GATE, tensor=f"{GATE}.weight_packed", file="model.safetensors")
    assert f["evidence"]["words"] == 2 and f["evidence"]["first_word"] == 5 * 26 + 3 and status == 1
