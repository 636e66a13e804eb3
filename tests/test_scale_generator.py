"""The scale benchmark's checkpoint generator (benchmarks/scale/make_checkpoint.py), at a tiny size: it must write
valid sharded checkpoints that `awqfmt check` passes with 0 errors, with data real enough that a rule can fail."""

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from awqfmt.check import check_path
from awqfmt.checkpoint import open_checkpoint
from awqfmt.cli import app
from awqfmt.packing import pack, unpack
from awqfmt.spec import get_spec

GEN = Path(__file__).resolve().parents[1] / "benchmarks" / "scale" / "make_checkpoint.py"
_spec = importlib.util.spec_from_file_location("make_checkpoint", GEN)
make_checkpoint = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_checkpoint", make_checkpoint)  # dataclasses look their module up there
_spec.loader.exec_module(make_checkpoint)

TINY_LLAMA = dict(layers=3, hidden=256, inter=512, kv=128, vocab=320, group=64, shards=2)


def test_llama_shaped_checkpoint_is_valid_sharded_and_clean(tmp_path):
    summary = make_checkpoint.make_llama70b(tmp_path, **TINY_LLAMA)
    assert summary["tensors"] == 3 * (2 + 7 * 3) + 3 and summary["shards"] == 2
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(index["weight_map"]) == summary["tensors"] and index["metadata"]["total_size"] == summary["total_bytes"]
    assert json.loads((tmp_path / "config.json").read_text())["quantization_config"]["quant_method"] == "awq"
    result = check_path(tmp_path)
    assert result.errors == 0 and result.warnings == 0, [f.message for f in result.findings]
    assert result.layout["detected"] == result.layout["config"] == "awq"
    assert (result.layout["bits"], result.layout["group_size"], result.layout["files"]) == (4, 64, 2)
    assert result.modules == 21 and result.tensors == summary["tensors"]
    # the sampled codes sit around the zero points, as in a real AWQ checkpoint
    assert len(result.module_stats) == 21 and min(s["median_at_zero_pct"] for s in result.module_stats.values()) >= 99
    run = CliRunner().invoke(app, ["check", str(tmp_path), "--json"])
    assert run.exit_code == 0 and json.loads(run.stdout)["summary"] == {"errors": 0, "warnings": 0}


def test_unsampled_data_are_holes_of_zeros(tmp_path):
    make_checkpoint.make_llama70b(tmp_path, **TINY_LLAMA)
    ck = open_checkpoint(tmp_path)
    try:
        assert not ck.array("model.embed_tokens.weight").any()  # never written: reads as zeros
        assert (ck.array("model.norm.weight").view(np.float16) == 1).all()
        scales = ck.array("model.layers.0.mlp.down_proj.scales").view(np.float16)
        assert scales.shape == (512 // 64, 256) and (scales > 0).all() and np.isfinite(scales).all()
    finally:
        ck.close()


def test_moe_layout_has_nine_tensors_per_expert_and_is_clean(tmp_path):
    summary = make_checkpoint.make_moe(tmp_path, layers=2, experts=5, hidden=256, expert_inter=128, kv=128, vocab=64, group=64, shards=3)
    assert summary["tensors"] == 2 * (3 + 4 * 3 + 5 * 9) + 3 and summary["shards"] == 3
    result = check_path(tmp_path)
    assert result.errors == 0 and result.warnings == 0, [f.message for f in result.findings]
    assert result.modules == 2 * (4 + 5 * 3)


def test_a_damaged_generated_checkpoint_is_caught(tmp_path):
    """The generated values are real data: repacking one module's qzeros in natural order trips the pack-order rule."""
    make_checkpoint.make_llama70b(tmp_path, **TINY_LLAMA)
    target = "model.layers.1.mlp.gate_proj.qzeros"
    ck = open_checkpoint(tmp_path)
    try:
        st = ck.files[ck.locations[target]]
        entry, path, at = st.entries[target], st.path, st.data_offset + st.entries[target].begin
        words = np.array(ck.array(target))
    finally:
        ck.close()
    natural = pack(unpack(words, get_spec("awq").packing(4), axis=1), get_spec("logical").packing(4), axis=1)
    assert natural.nbytes == entry.nbytes
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, natural.tobytes(), at)
    finally:
        os.close(fd)
    result = check_path(tmp_path)
    hits = [f for f in result.findings if f.code == "order.zeros-vs-weights"]
    assert [h.tensor for h in hits] == [target] and result.errors == 1
