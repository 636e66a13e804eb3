"""`awqfmt layout`: spec tables and the decode of one real word."""

import json

from typer.testing import CliRunner

from awqfmt.cli import app
from awqfmt.layout_view import field_rows, fp16x2_pairs, word_report
from awqfmt.spec import get_spec

from conftest import REAL_CHECKPOINTS

runner = CliRunner()


def test_awq_registers_pair_adjacent_columns_and_natural_order_does_not():
    awq = fp16x2_pairs(get_spec("awq").packing(4))
    assert [(lo, hi) for _, _, _, lo, hi in awq] == [(0, 1), (2, 3), (4, 5), (6, 7)]
    natural = fp16x2_pairs(get_spec("logical").packing(4))
    assert [(lo, hi) for _, _, _, lo, hi in natural] == [(0, 4), (1, 5), (2, 6), (3, 7)]


def test_three_bit_rows_mark_straddling_fields():
    rows = field_rows(get_spec("gptq").packing(3))
    straddling = [r.logical for r in rows if r.note]
    assert straddling == [10, 21]


def test_cli_layout_table_and_errors():
    out = runner.invoke(app, ["layout", "awq-order"])
    assert out.exit_code == 0 and "order [0, 2, 4, 6, 1, 3, 5," in out.stdout and "[n_g, packed(N)]" in out.stdout
    assert runner.invoke(app, ["layout", "awq", "--bits", "3"]).exit_code == 2
    assert runner.invoke(app, ["layout", "no-such-layout"]).exit_code == 2


def test_word_report_decodes_awq_word_in_file_and_natural_order():
    path = REAL_CHECKPOINTS["awq_tiny_llama"][0]
    rep = word_report(path, "model.layers.0.mlp.down_proj.qweight", 3, 1)
    word = rep["words"][0]
    fields = sorted(rep["fields"], key=lambda f: f["position"])
    # field i holds column 8*col + AWQ_ORDER[i], value = nibble i of the word
    assert [f["coord"]["N"] for f in fields] == [8 + o for o in (0, 2, 4, 6, 1, 3, 5, 7)]
    assert [f["value"] for f in fields] == [(word >> (4 * i)) & 15 for i in range(8)]
    for f in fields:
        assert abs(f["weight"] - (f["value"] - f["zero"]) * f["scale"]) < 1e-6


def test_cli_word_report_json_and_bad_requests():
    path = str(REAL_CHECKPOINTS["gptq_b4_g64_sym"][0])
    ok = runner.invoke(app, ["layout", path, "--tensor", "model.layers.0.mlp.up_proj.qzeros", "--row", "1", "--col", "2", "--json"])
    assert ok.exit_code == 0
    rep = json.loads(ok.stdout)
    assert rep["words"] == [0x77777777] and all(f["value"] == 8 and f["stored"] == 7 for f in rep["fields"])
    assert runner.invoke(app, ["layout", path, "--tensor", "nope.qweight"]).exit_code == 2
    assert runner.invoke(app, ["layout", path, "--tensor", "model.layers.0.mlp.up_proj.qweight", "--row", "99999"]).exit_code == 2
    assert runner.invoke(app, ["layout", path]).exit_code == 2


def test_word_report_on_a_damaged_tensor_names_the_defect(tmp_path):
    import shutil
    src = REAL_CHECKPOINTS["awq_tiny_llama"][0]
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    model = dst / "model.safetensors"
    model.write_bytes(model.read_bytes()[:-1000])  # truncate: the last tensors run past the end of the file
    from awqfmt.safetensors_file import SafetensorsFile
    damaged = [f.tensor for f in SafetensorsFile(model).findings if f.code == "tensor.out-of-bounds"]
    assert damaged
    out = runner.invoke(app, ["layout", str(dst), "--tensor", damaged[0]])
    assert out.exit_code == 1
    assert "tensor.out-of-bounds" in out.stderr and damaged[0] in out.stderr.replace("\n", "")
