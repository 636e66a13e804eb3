"""Issue 5: the same hostile inputs that `check` turns into findings must not crash `convert`, `verify` or
`layout` either: each exits 1 (a finding / refusal) or 2 (usage), never 3 (internal error), never a traceback,
and `convert` leaves nothing at DST."""

import json
import pickle

import numpy as np
import pytest
from typer.testing import CliRunner

from awqfmt.cli import app

from conftest import REAL_CHECKPOINTS
from craft import copy_fixture, edit_config, edit_index, file_bytes, shard_checkpoint

AWQ = REAL_CHECKPOINTS["awq_tiny_llama"][0]
QWEIGHT = "model.layers.0.mlp.down_proj.qweight"
runner = CliRunner()


def _truncated(d):
    model = d / "model.safetensors"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def _header_not_json(d):
    (d / "model.safetensors").write_bytes(file_bytes("{not json"))


def _overlapping_offsets(d):
    header = {"a": {"dtype": "I32", "shape": [4], "data_offsets": [0, 16]},
              "b": {"dtype": "I32", "shape": [4], "data_offsets": [8, 24]}}
    (d / "model.safetensors").write_bytes(file_bytes(header, bytes(24)))


def _index_escapes(d):
    shard_checkpoint(d)
    edit_index(d, lambda idx: idx["weight_map"].update({QWEIGHT: "../../../etc/passwd"}))


def _pickle_only(d):
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(pickle.dumps({"w": [1, 2, 3]}))


def _config_wrong_types(d):
    edit_config(d, lambda q: q.update(bits="4", group_size=None))


def _scales_nan(d):
    from craft import Raw
    raw = Raw.read(d / "model.safetensors")
    scales = raw.get("model.layers.0.mlp.down_proj.scales").copy()
    scales[0, 0] = np.float16("nan")
    raw.set("model.layers.0.mlp.down_proj.scales", scales)
    raw.save(d / "model.safetensors")


HOSTILE = {f.__name__.lstrip("_"): f for f in (_truncated, _header_not_json, _overlapping_offsets, _index_escapes,
                                                _pickle_only, _config_wrong_types, _scales_nan)}


@pytest.fixture(params=sorted(HOSTILE))
def hostile(request, tmp_path):
    d = copy_fixture(AWQ, tmp_path / "src")
    HOSTILE[request.param](d)
    return request.param, d


def _no_crash(result):
    assert result.exit_code in (1, 2), (result.exit_code, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


def test_check_reports_it(hostile):
    name, d = hostile
    result = runner.invoke(app, ["check", str(d), "--json"])
    _no_crash(result)
    assert json.loads(result.stdout)["summary"]["errors"] >= 1


def test_convert_refuses_and_writes_nothing(hostile, tmp_path):
    name, d = hostile
    dst = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}
    result = runner.invoke(app, ["convert", str(d), str(dst), "--to", "gptq-v2"])
    _no_crash(result)
    assert not dst.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")], "a partial directory was left behind"
    assert {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()} == before


def test_verify_fails_cleanly(hostile):
    name, d = hostile
    result = runner.invoke(app, ["verify", str(d), "--backend", "numpy", "--json"])
    _no_crash(result)


def test_layout_fails_cleanly(hostile):
    name, d = hostile
    result = runner.invoke(app, ["layout", str(d), "--tensor", QWEIGHT, "--row", "0", "--col", "0"])
    if name in ("config_wrong_types", "scales_nan"):
        # the word itself is intact and readable; `check` is the command that reports the defect
        assert result.exit_code == 0, result.output
    else:
        _no_crash(result)
    if name == "index_escapes":  # the escaped tensor is named with the rule that refused it
        assert "index.bad-path" in result.output
