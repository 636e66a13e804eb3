"""`awqfmt bench` without a GPU, and its option parsing (the benchmark itself runs on the GPU machine)."""

import pytest
from typer.testing import CliRunner

import awqfmt.verify_backends as vb
from awqfmt.cli import app

runner = CliRunner()


def test_bench_without_gpu_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(vb, "gpu_available", lambda: False)
    out = runner.invoke(app, ["bench", "--m", "1"])
    assert out.exit_code == 2
    assert "needs CuPy and an NVIDIA GPU" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("args,message", [
    (["--shapes", "4096"], "--shapes: '4096' is not K x N"),
    (["--shapes", "4096x0"], "--shapes: '4096x0'"),
    (["--m", "1,x"], "--m: 'x' is not a positive integer"),
    (["--m", ","], "--m is empty"),
    (["--reps", "0"], "--reps must be at least 1"),
])
def test_bench_rejects_bad_options_before_touching_the_gpu(monkeypatch, args, message):
    monkeypatch.setattr(vb, "gpu_available", lambda: True)  # parsing fails first: nothing is launched
    out = runner.invoke(app, ["bench", *args], terminal_width=200)
    assert out.exit_code == 2, out.output
    assert message in out.output


def test_gpu_kernel_coverage_is_declared_once_by_awqfmt_gpu():
    from awqfmt import gpu
    from awqfmt.gpu.gemm import GemmError, GemmUnsupported

    assert [name for name in ("awq", "logical", "gptq", "gptq-v2", "compressed-tensors", "unpacked") if gpu.supports(name, 4)] == \
        ["awq", "logical", "gptq", "gptq-v2"]
    assert not gpu.supports("awq", 8) and not gpu.supports("gptq", 3)
    assert issubclass(GemmUnsupported, GemmError)  # verify falls back on GemmUnsupported only
