from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
DEMO = ROOT / "awqfmt" / "data" / "minilm_awq_g128"

# fixture name -> (path, expected layout, bits, group size)
REAL_CHECKPOINTS = {
    "awq_tiny_llama": (FIXTURES / "awq_tiny_llama", "awq", 4, 64),
    "minilm_awq_g128": (DEMO, "awq", 4, 128),
    "ct_from_awq_tiny": (FIXTURES / "ct_from_awq_tiny", "compressed-tensors", 4, 64),
    "gptq_b2_g32_asym": (FIXTURES / "gptq_b2_g32_asym", "gptq", 2, 32),
    "gptq_b3_g128_asym": (FIXTURES / "gptq_b3_g128_asym", "gptq", 3, 128),
    "gptq_b4_g64_asym_act": (FIXTURES / "gptq_b4_g64_asym_act", "gptq", 4, 64),
    "gptq_b4_g64_sym": (FIXTURES / "gptq_b4_g64_sym", "gptq", 4, 64),
    "gptq_b8_gall_sym": (FIXTURES / "gptq_b8_gall_sym", "gptq", 8, -1),
}


def ref_path(name: str) -> Path:
    return FIXTURES / f"{name}.ref.safetensors"


@pytest.fixture(params=sorted(REAL_CHECKPOINTS))
def real_checkpoint(request):
    return (request.param, *REAL_CHECKPOINTS[request.param])
