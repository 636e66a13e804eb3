"""`awqfmt check` on the real checkpoints written by AutoAWQ, AutoGPTQ and compressed-tensors."""

import json

from typer.testing import CliRunner

from awqfmt.check import check_path
from awqfmt.cli import app

from conftest import REAL_CHECKPOINTS


def test_layout_and_errors_on_every_real_checkpoint(real_checkpoint):
    name, path, layout, bits, group = real_checkpoint
    result = check_path(path)
    assert result.layout["detected"] == layout
    assert result.layout["config"] == layout
    assert result.layout["bits"] == bits
    assert result.layout["group_size"] == group
    codes = {f.code for f in result.findings if f.severity.value == "error"}
    if name == "gptq_b2_g32_asym":
        # AutoGPTQ's v1 packer wrote zero 0 as -1 and corrupted the higher fields of those words
        assert codes == {"zeros.v1-packer-corruption"}
        assert result.errors == result.modules  # every module of this file carries damaged words
    else:
        assert result.errors == 0, [f.message for f in result.findings]


def test_minilm_pack_order_evidence_is_strong():
    result = check_path(REAL_CHECKPOINTS["minilm_awq_g128"][0])
    pct = [s["median_at_zero_pct"] for s in result.module_stats.values()]
    assert len(pct) == 37 and min(pct) >= 99.8


def test_cli_json_shape_and_exit_codes():
    runner = CliRunner()
    ok = runner.invoke(app, ["check", str(REAL_CHECKPOINTS["awq_tiny_llama"][0]), "--json"])
    assert ok.exit_code == 0
    doc = json.loads(ok.stdout)
    assert set(doc) == {"path", "layout", "modules", "tensors", "findings", "summary"}
    assert doc["summary"] == {"errors": 0, "warnings": 0} and doc["modules"] == 14
    bad = runner.invoke(app, ["check", str(REAL_CHECKPOINTS["gptq_b2_g32_asym"][0]), "--json"])
    assert bad.exit_code == 1
    finding = json.loads(bad.stdout)["findings"][0]
    assert set(finding) >= {"severity", "code", "module", "tensor", "file", "message", "hint"}
    assert finding["tensor"].endswith(".qzeros") and finding["file"] == "model.safetensors"
    missing = runner.invoke(app, ["check", "/no/such/checkpoint"])
    assert missing.exit_code == 2
    demo = runner.invoke(app, ["check"])
    assert demo.exit_code == 0 and "awq" in demo.stdout


def test_version_flag_and_command():
    from awqfmt import __version__

    runner = CliRunner()
    for args in (["--version"], ["version"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0 and out.stdout.strip() == __version__
