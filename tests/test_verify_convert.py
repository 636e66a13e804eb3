"""`awqfmt verify --against` on real `awqfmt convert` outputs, and on one deliberately corrupted after conversion."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from awqfmt.checkpoint import open_checkpoint
from awqfmt.cli import app
from awqfmt.packing import pack, unpack
from awqfmt.spec import Packing, get_spec
from awqfmt.verify import verify_path

from conftest import REAL_CHECKPOINTS
from verify_support import write_safetensors

runner = CliRunner()

# every fixture into layouts of the other families (what `convert` accepts for it), plus a dense output
MATRIX = [
    ("awq_tiny_llama", "gptq-v2"), ("awq_tiny_llama", "compressed-tensors"), ("awq_tiny_llama", "fp16"),
    ("minilm_awq_g128", "logical"), ("minilm_awq_g128", "gptq-v2"), ("ct_from_awq_tiny", "awq"),
    ("gptq_b2_g32_asym", "unpacked"), ("gptq_b3_g128_asym", "compressed-tensors"),
    ("gptq_b4_g64_asym_act", "gptq-v2"), ("gptq_b4_g64_sym", "awq"), ("gptq_b8_gall_sym", "unpacked"),
]


def _convert(src, dst, layout, *extra):
    out = runner.invoke(app, ["convert", str(src), str(dst), "--to", layout, "--json", *extra])
    assert out.exit_code == 0, out.output
    return dst


@pytest.mark.parametrize("name,layout", MATRIX)
def test_verify_passes_on_convert_outputs(tmp_path, name, layout):
    src = REAL_CHECKPOINTS[name][0]
    extra = ["--v1-all-ones", "kernel"] if name == "gptq_b2_g32_asym" else []
    dst = _convert(src, tmp_path / "out", layout, *extra)
    result = verify_path(dst, against=src, backend="numpy") if layout != "fp16" else verify_path(src, against=dst, backend="numpy")
    assert result.ok, [f.message for f in result.findings]
    n = {"minilm_awq_g128": 37}.get(name, 14)
    assert len(result.modules) == n and not result.missing_in_against and not result.missing_in_checkpoint
    assert max(m.outputs.rel_err for m in result.modules) < (5e-4 if layout == "fp16" else 1e-5)


def test_a_convert_output_with_one_module_qzeros_in_the_wrong_order(tmp_path):
    src = REAL_CHECKPOINTS["gptq_b4_g64_asym_act"][0]
    dst = _convert(src, tmp_path / "ct", "compressed-tensors")
    bad = "model.layers.1.self_attn.v_proj"
    ckpt = open_checkpoint(dst)
    tensors = {n: (np.array(ckpt.array(n)), ckpt.entry(n).dtype) for n in ckpt.tensor_names}
    ckpt.close()
    zt = get_spec("compressed-tensors").tensor("zeros")  # [N/8, n_g], packed along N
    words, dt = tensors[f"{bad}.{zt.name}"]
    natural = get_spec("compressed-tensors").packing(4)
    fields = unpack(words, natural, axis=zt.packed_dim)
    tensors[f"{bad}.{zt.name}"] = (pack(fields, Packing(4, 8, 1, get_spec("awq").packing(4).order), axis=zt.packed_dim), dt)
    write_safetensors(dst / "model.safetensors", tensors)

    out = runner.invoke(app, ["verify", str(dst), "--against", str(src), "--json"])
    assert out.exit_code == 1
    doc = json.loads(out.stdout)
    assert [m["name"] for m in doc["modules"] if not m["ok"]] == [bad]
    assert [(f["code"], f["module"]) for f in doc["findings"]] == [("verify.against-mismatch", bad)]
