"""Write synthetic, format-correct AWQ checkpoints quickly, as sparse files, for the scale benchmark.

    .venv/bin/python benchmarks/scale/make_checkpoint.py llama70b /tmp/awqfmt-scale/llama70b
    .venv/bin/python benchmarks/scale/make_checkpoint.py moe100k  /tmp/awqfmt-scale/moe100k

Every shard is a valid safetensors file (header, contiguous data offsets) plus `model.safetensors.index.json`
and a `config.json` with an AWQ `quantization_config`, so `awqfmt check` reports 0 errors. Only what the
default check reads holds real bytes: scales (positive finite fp16), qzeros (zero points 4..11), the norms,
and the rows of qweight in the groups that check samples (codes = zero point + symmetric noise, so the pack-
order rule sees realistic medians). Everything else (the rest of qweight, the embeddings) is a hole: the
file is `truncate`d to its full size and reads as zeros without taking disk space.

Modules with the same (K, N) share one template (built once with awqfmt's own `pack` and the AWQ spec's
shape formulas), so writing the 37 GB Llama-2-70B shape costs ~1.5 GB of real writes.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from awqfmt.rules.pack_order import sampled_groups  # noqa: E402  (the groups the default check reads)
from awqfmt.packing import pack  # noqa: E402
from awqfmt.spec import get_spec  # noqa: E402

BITS = 4
SPEC = get_spec("awq")


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]
    fill: object = None  # None: a hole (zeros); else (template key, role) or "ones" for a norm

    @property
    def nbytes(self) -> int:
        n = {"F16": 2, "I32": 4}[self.dtype]
        for d in self.shape:
            n *= d
        return n


@dataclass
class Template:
    """The bytes of one quantized Linear of shape (K, N): qzeros and scales whole, qweight rows per sampled group."""

    qzeros: bytes
    scales: bytes
    qweight_rows: list[tuple[int, bytes]]  # (first row, packed rows) of each sampled group
    row_bytes: int


def build_template(K: int, N: int, group: int, seed: int) -> Template:
    rng = np.random.default_rng(seed)
    n_g = K // group
    p = SPEC.packing(BITS)
    codes_t, zeros_t = SPEC.tensor("codes"), SPEC.tensor("zeros")
    zeros = rng.integers(4, 12, size=(n_g, N), dtype=np.uint8)  # typical AWQ zero points, well inside [0, 15]
    scales = rng.uniform(1e-3, 2e-2, size=(n_g, N)).astype(np.float16)  # positive, finite
    qzeros = pack(zeros, p, axis=zeros_t.packed_dim)
    assert qzeros.shape == SPEC.expected_shape(zeros_t, K, N, group, BITS)
    rows = []
    for g in sampled_groups(n_g, deep=False):
        noise = rng.integers(-3, 4, size=(group, N), dtype=np.int16)  # symmetric: the median code is the zero point
        codes = (zeros[g][None, :].astype(np.int16) + noise).astype(np.uint8)
        rows.append((int(g) * group, pack(codes, p, axis=codes_t.packed_dim).tobytes()))
    row_bytes = SPEC.expected_shape(codes_t, K, N, group, BITS)[1] * 4
    return Template(qzeros.tobytes(), scales.tobytes(), rows, row_bytes)


def linear(prefix: str, K: int, N: int, group: int) -> list[Tensor]:
    shape = {t.role: SPEC.expected_shape(t, K, N, group, BITS) for t in SPEC.tensors if not t.optional}
    key = (K, N, group)
    return [Tensor(f"{prefix}.qweight", "I32", shape["codes"], (key, "codes")),
            Tensor(f"{prefix}.qzeros", "I32", shape["zeros"], (key, "zeros")),
            Tensor(f"{prefix}.scales", "F16", shape["scales"], (key, "scales"))]


# ---- model shapes ------------------------------------------------------------------------------------------

def llama_layers(layers: int, hidden: int, inter: int, kv: int, vocab: int, group: int) -> list[list[Tensor]]:
    """Per-layer tensor lists of a Llama-2 (GQA) AWQ checkpoint; the first and last lists hold embeddings/head."""
    out = [[Tensor("model.embed_tokens.weight", "F16", (vocab, hidden))]]
    for i in range(layers):
        p = f"model.layers.{i}"
        ts = [Tensor(f"{p}.input_layernorm.weight", "F16", (hidden,), "ones"),
              Tensor(f"{p}.post_attention_layernorm.weight", "F16", (hidden,), "ones")]
        for name, K, N in (("self_attn.q_proj", hidden, hidden), ("self_attn.k_proj", hidden, kv), ("self_attn.v_proj", hidden, kv),
                           ("self_attn.o_proj", hidden, hidden), ("mlp.gate_proj", hidden, inter), ("mlp.up_proj", hidden, inter),
                           ("mlp.down_proj", inter, hidden)):
            ts += linear(f"{p}.{name}", K, N, group)
        out.append(ts)
    out.append([Tensor("model.norm.weight", "F16", (hidden,), "ones"), Tensor("lm_head.weight", "F16", (vocab, hidden))])
    return out


def moe_layers(layers: int, experts: int, hidden: int, expert_inter: int, kv: int, vocab: int, group: int) -> list[list[Tensor]]:
    """A Mixtral-like layout with many small experts: 9 tensors per expert, 100k+ tensors in all."""
    out = [[Tensor("model.embed_tokens.weight", "F16", (vocab, hidden))]]
    for i in range(layers):
        p = f"model.layers.{i}"
        ts = [Tensor(f"{p}.input_layernorm.weight", "F16", (hidden,), "ones"),
              Tensor(f"{p}.post_attention_layernorm.weight", "F16", (hidden,), "ones"),
              Tensor(f"{p}.block_sparse_moe.gate.weight", "F16", (experts, hidden))]
        for name, K, N in (("q_proj", hidden, hidden), ("k_proj", hidden, kv), ("v_proj", hidden, kv), ("o_proj", hidden, hidden)):
            ts += linear(f"{p}.self_attn.{name}", K, N, group)
        for e in range(experts):
            for name, K, N in (("w1", hidden, expert_inter), ("w3", hidden, expert_inter), ("w2", expert_inter, hidden)):
                ts += linear(f"{p}.block_sparse_moe.experts.{e}.{name}", K, N, group)
        out.append(ts)
    out.append([Tensor("model.norm.weight", "F16", (hidden,), "ones"), Tensor("lm_head.weight", "F16", (vocab, hidden))])
    return out


# ---- writing -----------------------------------------------------------------------------------------------

def split_shards(layers: list[list[Tensor]], n_shards: int) -> list[list[Tensor]]:
    """Whole layers per shard, cut where the running byte count crosses each 1/n of the total (as HF's sharding does)."""
    total = sum(t.nbytes for layer in layers for t in layer)
    shards: list[list[Tensor]] = [[]]
    done = 0
    for layer in layers:
        if done >= total * len(shards) / n_shards and len(shards) < n_shards:
            shards.append([])
        shards[-1].extend(layer)
        done += sum(t.nbytes for t in layer)
    return shards


def write_shard(path: Path, tensors: list[Tensor], templates: dict, group: int) -> int:
    """Header, then a sparse data region; returns the bytes of real data written."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # pad to 8 bytes like the reference writer
    base = 8 + len(raw)
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, struct.pack("<Q", len(raw)) + raw)
        os.ftruncate(fd, base + offset)  # the data region is one hole until written
        for t in tensors:
            begin = base + header[t.name]["data_offsets"][0]
            if t.fill is None:
                continue
            if t.fill == "ones":
                chunks = [(begin, np.ones(t.shape, np.float16).tobytes())]
            else:
                key, role = t.fill
                tpl = templates[key]
                if role == "zeros":
                    chunks = [(begin, tpl.qzeros)]
                elif role == "scales":
                    chunks = [(begin, tpl.scales)]
                else:
                    chunks = [(begin + row * tpl.row_bytes, data) for row, data in tpl.qweight_rows]
            for at, data in chunks:
                os.pwrite(fd, data, at)
                written += len(data)
    finally:
        os.close(fd)
    return written


def write_checkpoint(out: Path, layers: list[list[Tensor]], n_shards: int, group: int, config: dict) -> dict:
    """Write shards + index + config.json into `out` (created); returns a summary."""
    t0 = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    keys = sorted({t.fill[0] for layer in layers for t in layer if isinstance(t.fill, tuple)})
    templates = {key: build_template(key[0], key[1], key[2], seed=i) for i, key in enumerate(keys)}
    shards = split_shards(layers, n_shards)
    weight_map, total, written = {}, 0, 0
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        written += write_shard(out / name, tensors, templates, group)
        for t in tensors:
            weight_map[t.name] = name
            total += t.nbytes
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(config, indent=2))
    return {"path": str(out), "shards": len(shards), "tensors": len(weight_map), "total_bytes": total,
            "real_bytes_written": written, "seconds": round(time.perf_counter() - t0, 2)}


def awq_config(model_type: str, hidden: int, layers: int, group: int, **extra) -> dict:
    q = {k: v for k, v in SPEC.config["write"].items()}
    q.update(bits=BITS, group_size=group, zero_point=True, modules_to_not_convert=None)
    return {"architectures": [extra.pop("architecture")], "model_type": model_type, "hidden_size": hidden,
            "num_hidden_layers": layers, "torch_dtype": "float16", **extra, "quantization_config": q}


def make_llama70b(out: Path, layers: int = 80, hidden: int = 8192, inter: int = 28672, kv: int = 1024, vocab: int = 32000,
                  group: int = 128, shards: int = 8) -> dict:
    heads = max(1, hidden // 128)
    config = awq_config("llama", hidden, layers, group, architecture="LlamaForCausalLM", intermediate_size=inter,
                        num_attention_heads=heads, num_key_value_heads=max(1, kv * heads // hidden), vocab_size=vocab)
    return write_checkpoint(out, llama_layers(layers, hidden, inter, kv, vocab, group), shards, group, config)


def make_moe(out: Path, layers: int = 32, experts: int = 346, hidden: int = 512, expert_inter: int = 128, kv: int = 128,
             vocab: int = 32000, group: int = 128, shards: int = 16) -> dict:
    config = awq_config("mixtral", hidden, layers, group, architecture="MixtralForCausalLM", intermediate_size=expert_inter,
                        num_local_experts=experts, num_experts_per_tok=2, num_attention_heads=max(1, hidden // 64),
                        num_key_value_heads=max(1, kv // 64), vocab_size=vocab)
    return write_checkpoint(out, moe_layers(layers, experts, hidden, expert_inter, kv, vocab, group), shards, group, config)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("shape", choices=["llama70b", "moe100k"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--layers", type=int, help="override the number of layers (e.g. 8 for a small run)")
    args = ap.parse_args(argv)
    kw = {"layers": args.layers} if args.layers else {}
    summary = make_llama70b(args.out, **kw) if args.shape == "llama70b" else make_moe(args.out, **kw)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
