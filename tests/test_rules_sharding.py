"""Sharding rules (issue 2, section 5): the index and the shards must agree. Each test shards a real AutoAWQ
checkpoint into two files plus an index, breaks exactly one thing, and checks finding, names and exit status."""

import pytest

from craft import Raw, assert_finding, check_cli, codes, copy_fixture, edit_index, shard_checkpoint
from conftest import REAL_CHECKPOINTS

SHARD1, SHARD2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"
INDEX = "model.safetensors.index.json"


@pytest.fixture
def sharded(tmp_path):
    d = copy_fixture(REAL_CHECKPOINTS["awq_tiny_llama"][0], tmp_path / "ckpt")
    index = shard_checkpoint(d, 2)
    return d, index


def test_sharded_copy_is_clean(sharded):
    d, _ = sharded
    status, doc = check_cli(d)
    assert status == 0 and doc["findings"] == []
    assert doc["layout"]["files"] == 2 and doc["layout"]["index"] == INDEX and doc["modules"] == 14
    # the index given directly works the same
    status, doc = check_cli(d / INDEX)
    assert status == 0 and doc["findings"] == []


def test_index_names_a_missing_file(sharded):
    d, index = sharded
    (d / SHARD2).unlink()
    status, doc = check_cli(d)
    f = assert_finding(doc, "index.missing-file", file=INDEX, severity="error")
    assert SHARD2 in f["message"]
    assert f["evidence"]["tensors"] == sum(1 for s in index["weight_map"].values() if s == SHARD2)
    assert status == 1


def test_index_names_a_tensor_the_shard_lacks(sharded):
    d, _ = sharded
    edit_index(d, lambda o: o["weight_map"].update({"model.layers.9.mlp.up_proj.qweight": SHARD1}))
    status, doc = check_cli(d)
    assert_finding(doc, "index.missing-tensor", tensor="model.layers.9.mlp.up_proj.qweight", file=INDEX)
    assert status == 1


def test_tensor_absent_from_the_index(sharded):
    d, index = sharded
    victim = next(n for n, s in index["weight_map"].items() if s == SHARD2)
    edit_index(d, lambda o: o["weight_map"].pop(victim))
    status, doc = check_cli(d)
    assert_finding(doc, "index.unlisted-tensor", tensor=victim, file=SHARD2, severity="error")
    assert status == 1


def test_tensor_in_two_shards(sharded):
    d, index = sharded
    victim = next(n for n, s in index["weight_map"].items() if s == SHARD1 and n.endswith(".qzeros"))
    one = Raw.read(d / SHARD1)
    two = Raw.read(d / SHARD2)
    two.add(victim, one.get(victim), one.dtype(victim))
    two.save(d / SHARD2)
    status, doc = check_cli(d)
    f = assert_finding(doc, "index.duplicate-tensor", tensor=victim, file=SHARD2)
    assert SHARD1 in f["message"] and status == 1


def test_tensor_in_two_shards_without_an_index(sharded):
    d, index = sharded
    (d / INDEX).unlink()
    victim = next(n for n, s in index["weight_map"].items() if s == SHARD2)
    two = Raw.read(d / SHARD2)
    one = Raw.read(d / SHARD1)
    one.add(victim, two.get(victim), two.dtype(victim))
    one.save(d / SHARD1)
    status, doc = check_cli(d)
    assert_finding(doc, "index.duplicate-tensor", tensor=victim)
    assert status == 1


@pytest.mark.parametrize("total", [1, "1162752", None])
def test_total_size_mismatch(sharded, total):
    d, index = sharded
    edit_index(d, lambda o: o["metadata"].update({"total_size": total}))
    status, doc = check_cli(d)
    if total is None:  # absent is fine: transformers does not need it
        assert "index.total-size" not in codes(doc) and status == 0
    else:
        f = assert_finding(doc, "index.total-size", file=INDEX, severity="warning")
        assert str(index["metadata"]["total_size"]) in f["message"]
        assert status == 0  # a warning: loaders that follow the weight_map still load the right tensors


def test_shard_the_index_ignores_is_reported(sharded):
    d, _ = sharded
    Raw.read(d / SHARD1).save(d / "model-old.safetensors")
    status, doc = check_cli(d)
    assert_finding(doc, "index.unlisted-file", file="model-old.safetensors", severity="warning")
    assert "index.duplicate-tensor" not in codes(doc)  # the stray file is not read as a shard
    assert status == 0


def test_weight_map_with_a_repeated_key(sharded):
    d, index = sharded
    text = (d / INDEX).read_text()
    name = next(iter(index["weight_map"]))
    dup = f'"{name}": "{index["weight_map"][name]}",'
    (d / INDEX).write_text(text.replace('"weight_map": {', '"weight_map": {' + dup, 1))
    status, doc = check_cli(d)
    assert_finding(doc, "index.duplicate-key", tensor=name, file=INDEX)
    assert status == 1
