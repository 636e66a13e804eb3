"""`awqfmt convert` is exact: A -> B -> A byte-identical on every fixture, decodes equal the peers' own references,
the word-level route equals the logical route, and the output is a complete, checkable checkpoint."""

import dataclasses
import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from awqfmt import dtypes
from awqfmt.checkpoint import open_checkpoint
from awqfmt.convert import ConvertRefused, convert, resolve_target
from awqfmt.logical import decode
from awqfmt.modules import fit_modules, group_modules
from awqfmt.spec import evaluate, get_spec

from conftest import REAL_CHECKPOINTS, ref_path

PACKED_TARGETS = ["awq", "logical", "gptq", "gptq-v2", "compressed-tensors"]
QUANT_TARGETS = PACKED_TARGETS + ["unpacked"]
# AutoGPTQ stored some zero points of 0 as -1 in this fixture; its references (and GPU kernels) read those all-ones
# fields as 2^b, which --v1-all-ones kernel selects
V1_READING = {"gptq_b2_g32_asym": "kernel"}


def tensors_of(path):
    """{name: (dtype, shape, bytes)} of every tensor of a checkpoint."""
    ckpt = open_checkpoint(path)
    try:
        return {n: (ckpt.entry(n).dtype, ckpt.entry(n).shape, ckpt.array(n).tobytes()) for n in ckpt.locations}
    finally:
        ckpt.close()


def logical_modules(path, v1_all_ones="kernel"):
    """{prefix: LogicalModule} decoded with the specs (independently of convert)."""
    ckpt = open_checkpoint(path)
    out = {}
    modules, _ = group_modules(ckpt)
    fit_modules(ckpt, modules)
    for m in modules.values():
        fit = m.chosen
        arrays = {k: np.array(ckpt.array(v)) for k, v in m.tensors.items()}
        names = {k: ckpt.entry(v).dtype for k, v in m.tensors.items()}
        out[m.prefix] = decode(fit.spec, arrays, names, fit.bits, fit.G, v1_all_ones=v1_all_ones)
    ckpt.close()
    return out


def expected_refusal(modules, target):
    """What the target cannot hold, worked out from the decoded data and the target spec alone."""
    if target in ("fp16", "bf16"):
        return None
    spec = get_spec(target)
    for m in modules.values():
        if m.bits not in spec.bits:
            return "convert.bits-unsupported"
        if spec.g_idx == "none" and m.has_act_order():
            return "convert.act-order"
        stored = m.zeros.astype(int) + spec.zero_offset
        if stored.min() < 0 or stored.max() > evaluate(spec.zero_max, {"b": m.bits}):
            return "convert.zero-unrepresentable"
    return None


@pytest.fixture(scope="module")
def decoded():
    return {name: logical_modules(path, V1_READING.get(name, "kernel")) for name, (path, *_) in REAL_CHECKPOINTS.items()}


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert a[name][:2] == b[name][:2], name
        assert a[name][2] == b[name][2], name


@pytest.mark.parametrize("target", QUANT_TARGETS)
@pytest.mark.parametrize("name", sorted(REAL_CHECKPOINTS))
def test_round_trip_is_byte_identical_or_refused_for_the_right_reason(name, target, decoded, tmp_path):
    path, layout, *_ = REAL_CHECKPOINTS[name]
    want_refusal = expected_refusal(decoded[name], target)
    there, back = tmp_path / "there", tmp_path / "back"
    if want_refusal:
        with pytest.raises(ConvertRefused) as exc:
            convert(path, there, target, v1_all_ones=V1_READING.get(name))
        assert {f.code for f in exc.value.findings} == {want_refusal}
        assert all(f.module for f in exc.value.findings)
        assert not there.exists() and list(tmp_path.iterdir()) == []
        return
    convert(path, there, target, v1_all_ones=V1_READING.get(name))
    # the intermediate decodes to the same logical module
    mid = logical_modules(there)
    assert mid.keys() == decoded[name].keys()
    for prefix, m in decoded[name].items():
        got = mid[prefix]
        assert np.array_equal(got.codes, m.codes) and np.array_equal(got.zeros, m.zeros), prefix
        assert got.scales.tobytes() == m.scales.tobytes() and got.scale_dtype == m.scale_dtype
        assert np.array_equal(got.effective_g_idx(), m.effective_g_idx())
    convert(there, back, layout, v1_all_ones=V1_READING.get(name))
    assert_same_tensors(tensors_of(back), tensors_of(path))


@pytest.mark.parametrize("target", QUANT_TARGETS + ["fp16", "bf16"])
@pytest.mark.parametrize("name", sorted(set(REAL_CHECKPOINTS) - {"ct_from_awq_tiny"}))
def test_converted_checkpoints_decode_to_the_peers_own_references(name, target, decoded, tmp_path):
    path, layout, *_ = REAL_CHECKPOINTS[name]
    if expected_refusal(decoded[name], target):
        pytest.skip("refused (tested above)")
    out = tmp_path / "out"
    convert(path, out, target, v1_all_ones=V1_READING.get(name))
    ref = load_file(str(ref_path(name)))
    compared = 0
    if target in ("fp16", "bf16"):
        ckpt = open_checkpoint(out)  # raw storage: BF16 as uint16 (numpy has no bfloat16)
        dense = {n: np.array(ckpt.array(n)) for n in ckpt.locations}
        ckpt.close()
        dtype = resolve_target(target).dense_dtype
        for key, want in ref.items():
            prefix, kind = key.rsplit(".", 1)
            if kind != "dequant":
                continue
            got = dtypes.to_float32(dense[f"{prefix}.weight"], dtype).T
            if layout == "awq":
                # AutoAWQ's ref is the fp16 product, itself the exact (q - z) * s rounded once: the fp16 output must
                # equal it, and the bf16 output that same exact value rounded once to bf16
                exact = decoded[name][prefix].dequantize(np.float32)  # exact: small integer times fp16 scale
                assert np.array_equal(exact.astype(np.float16).astype(np.float32), want), prefix
                want = exact
            # AutoGPTQ's fp32 ref is exact: rounded once, it is what the dense output must hold
            assert np.array_equal(got, dtypes.to_float32(dtypes.from_float32(want, dtype), dtype)), prefix
            compared += 1
    else:
        modules = logical_modules(out, V1_READING.get(name, "kernel"))
        for prefix, m in modules.items():
            if f"{prefix}.codes" in ref:
                assert np.array_equal(m.codes, ref[f"{prefix}.codes"]), prefix
                compared += 1
            if f"{prefix}.dequant" in ref:
                dt = np.float16 if layout == "awq" else np.float32
                assert np.array_equal(m.dequantize(dt).astype(np.float32), ref[f"{prefix}.dequant"]), prefix
                compared += 1
    assert compared >= 7


def test_awq_to_compressed_tensors_equals_compressed_tensors_own_conversion(tmp_path):
    out = tmp_path / "ct"
    convert(REAL_CHECKPOINTS["awq_tiny_llama"][0], out, "compressed-tensors")
    got, want = tensors_of(out), tensors_of(REAL_CHECKPOINTS["ct_from_awq_tiny"][0])
    compared = 0
    for name, (dtype, shape, raw) in want.items():
        if name.rsplit(".", 1)[-1] in ("weight_packed", "weight_zero_point", "weight_scale", "weight_shape"):
            assert got[name] == (dtype, shape, raw), name
            compared += 1
    assert compared == 14 * 4
    assert_same_tensors(got, want)  # lm_head, embeddings and norms too: the whole state dict matches
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    w = qc["config_groups"]["group_0"]["weights"]
    assert (qc["quant_method"], qc["format"], w["num_bits"], w["group_size"], w["symmetric"], w["strategy"]) == \
        ("compressed-tensors", "pack-quantized", 4, 64, False, "group")
    assert qc["ignore"] == ["lm_head"]


@pytest.mark.parametrize("target", QUANT_TARGETS)
@pytest.mark.parametrize("name", sorted(REAL_CHECKPOINTS))
def test_word_level_route_equals_logical_route(name, target, decoded, tmp_path):
    if expected_refusal(decoded[name], target):
        pytest.skip("refused")
    path = REAL_CHECKPOINTS[name][0]
    convert(path, tmp_path / "fast", target, v1_all_ones=V1_READING.get(name), route="fast")
    convert(path, tmp_path / "logical", target, v1_all_ones=V1_READING.get(name), route="logical")
    assert (tmp_path / "fast" / "model.safetensors").read_bytes() == (tmp_path / "logical" / "model.safetensors").read_bytes()


def test_unpacked_source_converts_back_through_the_fast_route(tmp_path):
    path = REAL_CHECKPOINTS["gptq_b3_g128_asym"][0]
    convert(path, tmp_path / "u", "unpacked")
    for target in ("gptq", "compressed-tensors"):
        convert(tmp_path / "u", tmp_path / f"fast-{target}", target)
        convert(tmp_path / "u", tmp_path / f"logical-{target}", target, route="logical")
        assert (tmp_path / f"fast-{target}" / "model.safetensors").read_bytes() == \
            (tmp_path / f"logical-{target}" / "model.safetensors").read_bytes()
    assert_same_tensors(tensors_of(tmp_path / "fast-gptq"), tensors_of(path))


# ---- a complete checkpoint ------------------------------------------------------------------------------------

def test_configs_are_what_each_target_tool_writes(tmp_path):
    src = REAL_CHECKPOINTS["gptq_b4_g64_sym"][0]
    model_type = json.loads((src / "config.json").read_text()).get("model_type")
    convert(src, tmp_path / "awq", "awq")
    q = json.loads((tmp_path / "awq" / "config.json").read_text())["quantization_config"]
    assert q == {"quant_method": "awq", "version": "gemm", "bits": 4, "group_size": 64, "zero_point": False,
                 "modules_to_not_convert": None}
    assert json.loads((tmp_path / "awq" / "config.json").read_text()).get("model_type") == model_type
    assert not (tmp_path / "awq" / "quantize_config.json").exists()
    convert(REAL_CHECKPOINTS["awq_tiny_llama"][0], tmp_path / "v2", "gptq-v2")
    q = json.loads((tmp_path / "v2" / "config.json").read_text())["quantization_config"]
    assert {k: q[k] for k in ("quant_method", "bits", "group_size", "desc_act", "sym", "checkpoint_format")} == \
        {"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": False, "sym": False, "checkpoint_format": "gptq_v2"}
    assert json.loads((tmp_path / "v2" / "quantize_config.json").read_text()) == q
    convert(REAL_CHECKPOINTS["gptq_b4_g64_asym_act"][0], tmp_path / "ct", "compressed-tensors")
    w = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]["weights"]
    assert (w["actorder"], w["symmetric"], w["group_size"]) == ("group", False, 64)
    assert any(n.endswith("weight_g_idx") for n in tensors_of(tmp_path / "ct"))
    convert(REAL_CHECKPOINTS["gptq_b8_gall_sym"][0], tmp_path / "ct8", "compressed-tensors")
    w = json.loads((tmp_path / "ct8" / "config.json").read_text())["quantization_config"]["config_groups"]["group_0"]["weights"]
    assert (w["strategy"], w["group_size"], w["symmetric"]) == ("channel", None, True)
    assert not any(n.endswith("weight_zero_point") for n in tensors_of(tmp_path / "ct8"))  # symmetric: no zero points
    convert(REAL_CHECKPOINTS["awq_tiny_llama"][0], tmp_path / "dense", "bf16")
    cfg = json.loads((tmp_path / "dense" / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["torch_dtype"] == "bfloat16"
    assert (tmp_path / "dense" / "generation_config.json").read_bytes() == \
        (REAL_CHECKPOINTS["awq_tiny_llama"][0] / "generation_config.json").read_bytes()


def test_side_files_unquantized_tensors_and_metadata_are_kept(tmp_path):
    src = REAL_CHECKPOINTS["minilm_awq_g128"][0]
    result = convert(src, tmp_path / "out", "gptq-v2")
    assert sorted(result.files_copied) == ["special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt"]
    for name in result.files_copied:
        assert (tmp_path / "out" / name).read_bytes() == (src / name).read_bytes()
    a, b = tensors_of(src), tensors_of(tmp_path / "out")
    plain = [n for n in a if n.rsplit(".", 1)[-1] not in ("qweight", "qzeros", "scales")]
    assert len(plain) > 50 and all(a[n] == b[n] for n in plain)  # biases, LayerNorms, embeddings: bit for bit
    ckpt = open_checkpoint(tmp_path / "out")
    assert ckpt.files["model.safetensors"].metadata == {"format": "pt"}
    ckpt.close()


def test_sharding_with_index_and_jobs_gives_the_same_tensors(tmp_path):
    src = REAL_CHECKPOINTS["minilm_awq_g128"][0]
    one = convert(src, tmp_path / "one", "compressed-tensors")
    many = convert(src, tmp_path / "many", "compressed-tensors", max_shard_size="1MB", jobs=2)
    assert one.shards == 1 and not (tmp_path / "one" / "model.safetensors.index.json").exists()
    assert many.shards > 3 and many.errors == 0
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert files == [f"model-{i:05d}-of-{many.shards:05d}.safetensors" for i in range(1, many.shards + 1)]
    assert index["metadata"]["total_size"] == one.bytes
    for f in files:  # each shard within the limit unless one module alone is larger
        shard = load_file(str(tmp_path / "many" / f))
        assert sum(v.nbytes for v in shard.values()) <= 1_000_000 or len({k.rsplit(".", 1)[0] for k in shard}) == 1
    assert_same_tensors(tensors_of(tmp_path / "many"), tensors_of(tmp_path / "one"))
    single = convert(src, tmp_path / "single-proc", "compressed-tensors", max_shard_size="1MB", jobs=1)
    for f in files:
        assert (tmp_path / "single-proc" / f).read_bytes() == (tmp_path / "many" / f).read_bytes()
    assert single.shards == many.shards


def test_scale_dtype_widening_is_exact_and_verified(tmp_path):
    src = REAL_CHECKPOINTS["awq_tiny_llama"][0]
    result = convert(src, tmp_path / "f32", "gptq-v2", scale_dtype="F32", verify=True)
    assert result.verified and result.errors == 0
    ckpt = open_checkpoint(tmp_path / "f32")
    assert {ckpt.entry(n).dtype for n in ckpt.locations if n.endswith(".scales")} == {"F32"}
    ckpt.close()
    back = convert(tmp_path / "f32", tmp_path / "f16", "awq", scale_dtype="F16")  # narrowing back is exact here
    assert back.errors == 0
    assert_same_tensors(tensors_of(tmp_path / "f16"), tensors_of(src))


def test_verify_reports_a_difference_and_leaves_no_dst(tmp_path, monkeypatch):
    import awqfmt.convert_engine as C

    real = C.repack_tensor

    def damaged(stored, *args, **kw):
        out = real(stored, *args, **kw).copy()
        out.reshape(-1)[5] ^= 1  # one code of one module flips: `check` cannot see it, --verify must
        return out

    monkeypatch.setattr(C, "repack_tensor", damaged)
    with pytest.raises(ConvertRefused) as exc:
        convert(REAL_CHECKPOINTS["awq_tiny_llama"][0], tmp_path / "out", "gptq", verify=True)
    codes = [f for f in exc.value.findings if f.code == "verify.mismatch"]
    assert len(codes) == 14 and all("codes differ at 1 of" in f.message for f in codes)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_verify_passes_for_dense_and_unpacked_targets(tmp_path):
    for target in ("fp16", "unpacked"):
        r = convert(REAL_CHECKPOINTS["gptq_b4_g64_asym_act"][0], tmp_path / target, target, verify=True)
        assert r.verified and r.errors == 0


def test_v1_all_ones_mask_reading(tmp_path, decoded):
    src = REAL_CHECKPOINTS["gptq_b2_g32_asym"][0]
    convert(src, tmp_path / "v2", "gptq-v2", v1_all_ones="mask")
    masked = logical_modules(tmp_path / "v2")
    kernel = decoded["gptq_b2_g32_asym"]
    differs = 0
    for prefix, m in kernel.items():
        want = m.zeros.copy()
        want[want == 4] = 0
        assert np.array_equal(masked[prefix].zeros, want)
        differs += int(np.count_nonzero(m.zeros == 4))
    assert differs > 0
    with pytest.raises(ConvertRefused) as exc:  # and zero points of 0 cannot go back into v1
        convert(tmp_path / "v2", tmp_path / "v1", "gptq")
    assert {f.code for f in exc.value.findings} == {"convert.zero-unrepresentable"}


# ---- every pair of layouts, in memory -----------------------------------------------------------------------

def _as_job(layout, prefix, tensors, bits, group):
    """A ModuleJob whose tensors are in memory: {short: (array, dtype)}."""
    from awqfmt.convert import ModuleJob, SrcTensor

    src = {short: SrcTensor(f"{prefix}.{short}", "<memory>", 0, a.nbytes, dt, a.shape) for short, (a, dt) in tensors.items()}
    return ModuleJob(prefix, layout, bits, group, src), lambda t: tensors[t.name.rsplit(".", 1)[1]][0]


@pytest.mark.parametrize("name", sorted(REAL_CHECKPOINTS))
def test_every_pair_of_layouts_round_trips_byte_identical(name, decoded):
    """A -> B -> A for every A and B that can hold the fixture's data, not only from its own layout: each module is
    encoded into A, then converted with the engine convert uses (word-level repack included) to B and back."""
    from awqfmt.convert import Options, convert_module
    from awqfmt.logical import encode

    modules = decoded[name]
    fits = [t for t in QUANT_TARGETS if expected_refusal(modules, t) is None]
    symmetric = all(bool(np.all(m.zeros == 1 << (m.bits - 1))) for m in modules.values())
    pairs = 0
    for prefix, m in list(modules.items())[:3]:
        m = dataclasses.replace(m, symmetric=symmetric)
        for a in fits:
            stored = encode(get_spec(a), m)
            for b in fits:
                job, read = _as_job(a, prefix, stored, m.bits, m.group_size)
                there = {k.rsplit(".", 1)[1]: v for k, v in convert_module(job, read, Options(b, None, "kernel", symmetric)).items()}
                job, read = _as_job(b, prefix, there, m.bits, m.group_size)
                back = {k.rsplit(".", 1)[1]: v for k, v in convert_module(job, read, Options(a, None, "kernel", symmetric)).items()}
                assert back.keys() == stored.keys(), (a, b)
                for short, (arr, dt) in stored.items():
                    assert back[short][1] == dt and back[short][0].shape == arr.shape, (a, b, short)
                    assert back[short][0].tobytes() == np.ascontiguousarray(arr).tobytes(), (a, b, short)
                pairs += 1
    assert pairs >= 3 * len(fits) ** 2 and len(fits) >= 2


def test_progress_reports_every_byte(tmp_path):
    seen = []
    result = convert(REAL_CHECKPOINTS["minilm_awq_g128"][0], tmp_path / "out", "gptq-v2", max_shard_size="2MB",
                     progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, result.bytes) and seen[-1] == (result.bytes, result.bytes)
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:])) and len(seen) > 10
