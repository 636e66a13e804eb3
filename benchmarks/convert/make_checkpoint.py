"""Write synthetic AWQ checkpoints with real random bytes everywhere, for the convert benchmark.

    .venv/bin/python benchmarks/convert/make_checkpoint.py module8192 /tmp/awqfmt-convert/module8192
    .venv/bin/python benchmarks/convert/make_checkpoint.py llama70b --layers 8 /tmp/awqfmt-convert/llama70b-8

`module8192`: one 8192 x 8192 Linear. `llama70b`: N Llama-2-70B decoder layers (hidden 8192, intermediate 28672,
64 heads / 8 kv heads: q/o 8192 x 8192, k/v 8192 -> 1024, gate/up 8192 -> 28672, down 28672 -> 8192) plus their
two RMSNorms, one shard per layer with model.safetensors.index.json. AWQ GEMM 4-bit, group 128: qweight words are
uniformly random (every code 0..15), zero points 4..11, scales positive fp16. Unlike benchmarks/scale (sparse
files that only hold what `check` samples), every byte is real, because a conversion reads all of them.
Written with the safetensors library itself, one layer at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from awqfmt.packing import pack  # noqa: E402
from awqfmt.spec import get_spec  # noqa: E402

BITS, GROUP = 4, 128
HIDDEN, INTER, KV = 8192, 28672, 1024
LAYER = {  # name -> (K = in_features, N = out_features)
    "self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.k_proj": (HIDDEN, KV), "self_attn.v_proj": (HIDDEN, KV),
    "self_attn.o_proj": (HIDDEN, HIDDEN), "mlp.gate_proj": (HIDDEN, INTER), "mlp.up_proj": (HIDDEN, INTER),
    "mlp.down_proj": (INTER, HIDDEN),
}
AWQ = get_spec("awq")


def awq_module(rng: np.random.Generator, K: int, N: int) -> dict[str, np.ndarray]:
    p = AWQ.packing(BITS)
    n_g = K // GROUP
    qweight = rng.integers(0, 2**32, size=AWQ.expected_shape(AWQ.tensor("codes"), K, N, GROUP, BITS), dtype=np.uint32)
    zeros = rng.integers(4, 12, size=(n_g, N), dtype=np.uint8)
    scales = rng.uniform(1e-3, 2e-2, size=(n_g, N)).astype(np.float16)
    return {"qweight": qweight.view(np.int32), "qzeros": pack(zeros, p, axis=AWQ.tensor("zeros").packed_dim), "scales": scales}


def config(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN, "intermediate_size": INTER,
        "num_attention_heads": 64, "num_key_value_heads": 8, "num_hidden_layers": layers, "rms_norm_eps": 1e-5,
        "vocab_size": 32000, "torch_dtype": "float16",
        "quantization_config": {"quant_method": "awq", "version": "gemm", "bits": BITS, "group_size": GROUP,
                                "zero_point": True, "modules_to_not_convert": None},
    }


def write_module8192(out: Path, seed: int = 0) -> None:
    out.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    tensors = {f"layer.{k}": v for k, v in awq_module(rng, HIDDEN, HIDDEN).items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps({"quantization_config": config(1)["quantization_config"]}, indent=2))


def write_llama70b(out: Path, layers: int, seed: int = 0) -> None:
    out.mkdir(parents=True)
    weight_map, total = {}, 0
    for i in range(layers):
        rng = np.random.default_rng(seed + i)
        tensors = {}
        for name, (K, N) in LAYER.items():
            for short, arr in awq_module(rng, K, N).items():
                tensors[f"model.layers.{i}.{name}.{short}"] = arr
        for norm in ("input_layernorm", "post_attention_layernorm"):
            tensors[f"model.layers.{i}.{norm}.weight"] = rng.uniform(0.5, 1.5, HIDDEN).astype(np.float16)
        shard = f"model-{i + 1:05d}-of-{layers:05d}.safetensors"
        save_file(tensors, str(out / shard), metadata={"format": "pt"})
        for name, arr in tensors.items():
            weight_map[name] = shard
            total += arr.nbytes
        del tensors
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (out / "config.json").write_text(json.dumps(config(layers), indent=2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kind", choices=["module8192", "llama70b"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    if args.kind == "module8192":
        write_module8192(args.out)
    else:
        write_llama70b(args.out, args.layers)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    print(f"wrote {args.out}: {size / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
