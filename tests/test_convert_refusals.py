"""Every refusal of `awqfmt convert`: the exact rule, module and tensor, exit status 1 (2 for usage errors), and
nothing written at DST. `--force` never turns a refusal to represent data into wrong weights."""

import fcntl
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from awqfmt.cli import app

from conftest import REAL_CHECKPOINTS
from test_convert import logical_modules

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


def refused(result, code, *, force_too=True):
    """Exit 1, a JSON refusal whose findings carry `code`, and (returns) those findings."""
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert doc["refused"] is True
    hits = [f for f in doc["findings"] if f["code"] == code]
    assert hits, doc["findings"]
    return hits


def nothing_at(dst):
    parent = dst.parent
    return not dst.exists() and not [p for p in parent.iterdir() if p.name.startswith(f".{dst.name}.")]


SRC = {name: path for name, (path, *_) in REAL_CHECKPOINTS.items()}


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_zero_point_of_0_into_gptq_v1(tmp_path, force):
    dst = tmp_path / "out"
    hits = refused(run(SRC["minilm_awq_g128"], dst, "--to", "gptq", "--json", *force), "convert.zero-unrepresentable")
    with_zero_0 = {p for p, m in logical_modules(SRC["minilm_awq_g128"]).items() if (m.zeros == 0).any()}
    assert {f["module"] for f in hits} == with_zero_0 and len(with_zero_0) >= 3  # real MiniLM weights
    for f in hits:
        assert f["module"].startswith("encoder.layer.") and f["tensor"] == f["module"] + ".qzeros"
        assert "equal 0" in f["message"] and "gptq-v2 or compressed-tensors" in f["hint"]
    assert nothing_at(dst)


@pytest.mark.parametrize("target", ["awq", "awq-order", "logical", "logical-order"])
def test_act_order_into_layouts_without_g_idx(tmp_path, target):
    dst = tmp_path / "out"
    hits = refused(run(SRC["gptq_b4_g64_asym_act"], dst, "--to", target, "--json", "--force"), "convert.act-order")
    assert len(hits) == 14 and all(f["tensor"] == f["module"] + ".g_idx" for f in hits)
    assert nothing_at(dst)


@pytest.mark.parametrize("target", ["awq", "logical"])
def test_three_bit_into_layouts_without_a_three_bit_packing(tmp_path, target):
    dst = tmp_path / "out"
    hits = refused(run(SRC["gptq_b3_g128_asym"], dst, "--to", target, "--json"), "convert.bits-unsupported")
    assert all(f["tensor"] == f["module"] + ".qweight" and "no 3-bit packing" in f["message"] for f in hits)
    assert "gptq" in hits[0]["hint"] and "compressed-tensors" in hits[0]["hint"]
    assert nothing_at(dst)


@pytest.mark.parametrize("target", ["gptq", "gptq-v2", "compressed-tensors", "unpacked", "fp16"])
def test_ambiguous_v1_all_ones_needs_an_explicit_reading(tmp_path, target):
    dst = tmp_path / "out"
    hits = refused(run(SRC["gptq_b2_g32_asym"], dst, "--to", target, "--json", "--force"), "convert.v1-all-ones")
    assert all(f["tensor"] == f["module"] + ".qzeros" and "--v1-all-ones" in f["hint"] for f in hits)
    assert {f["code"] for f in json.loads(run(SRC["gptq_b2_g32_asym"], dst, "--to", target, "--json").stdout)["findings"]} \
        == {"convert.v1-all-ones"}  # not "SRC has errors, use --force": --force is not the answer
    assert nothing_at(dst)
    assert run(SRC["gptq_b2_g32_asym"], dst, "--to", "unpacked", "--v1-all-ones", "kernel").exit_code == 0


def test_zero_of_2_to_the_b_is_written_into_v1_only_when_asked(tmp_path):
    u = tmp_path / "u"
    assert run(SRC["gptq_b2_g32_asym"], u, "--to", "unpacked", "--v1-all-ones", "kernel").exit_code == 0
    refused(run(u, tmp_path / "v1", "--to", "gptq", "--json"), "convert.v1-all-ones")
    refused(run(u, tmp_path / "v2", "--to", "gptq-v2", "--json", "--v1-all-ones", "kernel"), "convert.zero-unrepresentable")
    ok = run(u, tmp_path / "v1", "--to", "gptq", "--v1-all-ones", "kernel", "--json")
    # written as asked; `awqfmt check` flags the all-ones fields in DST, so the exit status says so
    assert ok.exit_code == 1 and json.loads(ok.stdout)["summary"]["errors"] == 14
    assert {f["code"] for f in json.loads(ok.stdout)["findings"]} == {"zeros.v1-packer-corruption"}
    assert (tmp_path / "v1" / "model.safetensors").exists()


def _unpacked_checkpoint(path, N=12, K=64, codes_max=15):
    """A hand-made `unpacked` checkpoint: one module with N (not a multiple of 8) outputs."""
    path.mkdir()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, size=(N, K), dtype=np.uint8)
    codes[0, 0] = codes_max
    save_file({"layer.weight_codes": codes, "layer.weight_zeros": np.full((N, 1), 8, np.uint8),
               "layer.weight_scales": np.full((N, 1), 0.01, np.float16), "norm.weight": np.ones(K, np.float16)},
              str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awqfmt-unpacked", "bits": 4, "group_size": -1}}))
    return path


@pytest.mark.parametrize("target", ["awq", "gptq", "gptq-v2"])
def test_shapes_the_target_cannot_pack(tmp_path, target):
    src = _unpacked_checkpoint(tmp_path / "u")
    hits = refused(run(src, tmp_path / "out", "--to", target, "--json"), "convert.target-shape")
    assert hits[0]["module"] == "layer" and "N=12" in hits[0]["message"]
    assert nothing_at(tmp_path / "out")
    assert run(src, tmp_path / "ct", "--to", "compressed-tensors").exit_code == 0  # ct packs N=12 along K: fine


def test_codes_out_of_range_in_an_unpacked_source(tmp_path):
    src = _unpacked_checkpoint(tmp_path / "u", codes_max=200)
    hits = refused(run(src, tmp_path / "out", "--to", "compressed-tensors", "--json", "--force"), "values.code-range")
    assert hits[0]["module"] == "layer" and hits[0]["tensor"] == "layer.weight_codes"
    assert nothing_at(tmp_path / "out")


def test_scale_dtype_that_changes_values(tmp_path):
    hits = refused(run(SRC["awq_tiny_llama"], tmp_path / "out", "--to", "gptq-v2", "--scale-dtype", "bf16", "--json"),
                   "convert.scale-inexact")
    assert len(hits) == 14 and all(f["tensor"] == f["module"] + ".scales" for f in hits)
    assert nothing_at(tmp_path / "out")


def test_src_with_check_errors_needs_force_and_force_carries_data_exactly(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SRC["awq_tiny_llama"], src)
    cfg = json.loads((src / "config.json").read_text())
    cfg["quantization_config"]["group_size"] = 128  # lies: the tensors have group 64
    (src / "config.json").write_text(json.dumps(cfg))
    res = run(src, tmp_path / "out", "--to", "gptq-v2", "--json")
    codes = {f["code"] for f in json.loads(res.stdout)["findings"]}
    assert res.exit_code == 1 and "convert.src-errors" in codes and "module.config-group" in codes
    assert nothing_at(tmp_path / "out")
    forced = run(src, tmp_path / "out", "--to", "gptq-v2", "--json", "--force", "--verify")
    doc = json.loads(forced.stdout)
    assert forced.exit_code == 0 and doc["verified"] is True
    assert "convert.forced" in {f["code"] for f in doc["findings"]}
    assert json.loads((tmp_path / "out" / "config.json").read_text())["quantization_config"]["group_size"] == 64


def test_dense_source_has_nothing_to_convert(tmp_path):
    src = tmp_path / "dense"
    src.mkdir()
    save_file({"layer.weight": np.ones((8, 8), np.float16)}, str(src / "model.safetensors"))
    refused(run(src, tmp_path / "out", "--to", "awq", "--json"), "convert.no-quantized-modules")


# ---- paths ----------------------------------------------------------------------------------------------------

def test_existing_dst_needs_overwrite_and_overwrite_replaces_it(tmp_path):
    dst = tmp_path / "out"
    assert run(SRC["awq_tiny_llama"], dst, "--to", "gptq").exit_code == 0
    before = (dst / "model.safetensors").read_bytes()
    refused(run(SRC["awq_tiny_llama"], dst, "--to", "compressed-tensors", "--json"), "convert.dst-exists")
    assert (dst / "model.safetensors").read_bytes() == before
    (dst / "stale.txt").write_text("from the old DST")
    assert run(SRC["awq_tiny_llama"], dst, "--to", "compressed-tensors", "--overwrite").exit_code == 0
    assert not (dst / "stale.txt").exists() and (dst / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_path_refusals(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(SRC["awq_tiny_llama"], src)
    refused(run(src, src, "--to", "gptq", "--json", "--overwrite"), "convert.dst-is-src")
    refused(run(src, src / "sub", "--to", "gptq", "--json"), "convert.dst-inside-src")
    refused(run(src / "model.safetensors", src / "out", "--to", "gptq", "--json"), "convert.dst-inside-src")
    refused(run(src, tmp_path, "--to", "gptq", "--json", "--overwrite"), "convert.src-inside-dst")
    (tmp_path / "file").write_text("x")
    refused(run(src, tmp_path / "file", "--to", "gptq", "--json", "--overwrite"), "convert.dst-is-file")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    refused(run(src, tmp_path / "notes", "--to", "gptq", "--json", "--overwrite"), "convert.dst-not-checkpoint")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"
    assert sorted(p.name for p in src.iterdir()) == ["config.json", "generation_config.json", "model.safetensors"]


def test_a_second_conversion_into_a_busy_dst_is_refused(tmp_path):
    dst = tmp_path / "out"
    lock = os.open(tmp_path / ".out.awqfmt-lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)  # what a running conversion holds
    try:
        refused(run(SRC["awq_tiny_llama"], dst, "--to", "gptq", "--json"), "convert.dst-busy")
        assert not dst.exists()
    finally:
        os.close(lock)
    assert run(SRC["awq_tiny_llama"], dst, "--to", "gptq").exit_code == 0


@pytest.mark.parametrize("args, words", [
    (["--to", "marlin"], "unknown layout"),
    (["--to", "gptq", "--max-shard-size", "lots"], "--max-shard-size"),
    (["--to", "gptq", "--max-shard-size", "0"], "--max-shard-size"),
    (["--to", "gptq", "--v1-all-ones", "maybe"], "--v1-all-ones"),
    (["--to", "gptq", "--scale-dtype", "f8"], "--scale-dtype"),
    (["--to", "fp16", "--scale-dtype", "f32"], "--scale-dtype"),
    (["--to", "gptq", "--jobs", "0"], "--jobs"),
])
def test_usage_errors_exit_2(tmp_path, args, words):
    res = run(SRC["awq_tiny_llama"], tmp_path / "out", *args)
    assert res.exit_code == 2 and words in res.output
    assert not (tmp_path / "out").exists()


def test_missing_src_is_a_usage_error(tmp_path):
    res = run(tmp_path / "nope", tmp_path / "out", "--to", "gptq")
    assert res.exit_code == 2 and "no such file" in res.output


# ---- the happy path, as written in the issue ----------------------------------------------------------------

def test_convert_model_to_awq_order_exactly_as_written(tmp_path, monkeypatch):
    shutil.copytree(SRC["gptq_b4_g64_sym"], tmp_path / "model")
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["convert", "model", "--to", "awq-order"])
    assert res.exit_code == 0, res.output
    assert f"writing to {tmp_path / 'model-awq'}" in res.stdout.replace("\n", "")
    assert res.stderr == ""  # not a terminal: no progress bar
    assert json.loads((tmp_path / "model-awq" / "config.json").read_text())["quantization_config"]["quant_method"] == "awq"
    check = runner.invoke(app, ["check", "model-awq", "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["layout"]["detected"] == "awq"


def test_json_report(tmp_path):
    res = run(SRC["awq_tiny_llama"], tmp_path / "out", "--to", "compressed-tensors", "--json", "--verify")
    doc = json.loads(res.stdout)
    assert res.exit_code == 0
    assert doc["layout"] == {"from": "awq", "to": "compressed-tensors"}
    assert doc["modules"] == 14 and doc["bytes"] == 1162976 and doc["seconds"] > 0 and doc["verified"] is True
    assert doc["src"] == str(SRC["awq_tiny_llama"]) and doc["dst"] == str(tmp_path / "out")
    assert doc["findings"] == [] and doc["files_copied"] == ["generation_config.json"]
