"""Mutators and a one-input runner for fuzzing `awqfmt check`, shared by tests/test_fuzz.py (hypothesis, bounded,
in CI) and benchmarks/fuzz/run_fuzz.py (a long, time-bounded random run).

Every mutator draws its choices from a `Chooser`, so the same code is driven by hypothesis (shrinkable,
reproducible examples) or by `random.Random` (fast, for hours). Inputs start from real checkpoints written by
AutoAWQ, AutoGPTQ and compressed-tensors, cut down to a few modules so that each run is quick.

The runner's contract, asserted by the callers: check terminates (an alarm stops a hang), returns 0 or 1,
never raises (also while rendering the report and the JSON), and reports an error for every file the
reference safetensors library refuses to load.
"""

from __future__ import annotations

import io
import json
import math
import shutil
import signal
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from craft import Raw, file_bytes, shard_checkpoint

# fixture -> tensor-name substrings to keep (a few modules of each layout, plus one unquantized tensor)
SEED_MODULES = {
    "awq_tiny_llama": ("layers.0.self_attn.k_proj.", "layers.0.mlp.down_proj.", "model.norm.weight"),
    "minilm_awq_g128": ("layer.0.attention.self.query.", "pooler.dense.", "embeddings.position_ids"),
    "gptq_b3_g128_asym": ("layers.0.self_attn.k_proj.", "layers.0.mlp.down_proj.", "model.norm.weight"),
    "gptq_b4_g64_asym_act": ("layers.0.self_attn.k_proj.", "layers.1.self_attn.v_proj.", "model.norm.weight"),
    "gptq_b8_gall_sym": ("layers.0.self_attn.o_proj.", "model.norm.weight"),
    "gptq_b2_g32_asym": ("layers.0.self_attn.q_proj.",),
    "ct_from_awq_tiny": ("layers.0.self_attn.k_proj.", "layers.1.mlp.up_proj.", "model.norm.weight"),
}
SHARDED_SEEDS = ("ct_from_awq_tiny",)  # written as two shards + index, to fuzz the index too

INTERESTING_INTS = (0, 1, -1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 63, 64, 127, 128, 255, 256, 2 ** 31 - 1, 2 ** 31, 2 ** 32,
                    2 ** 48, 2 ** 53 + 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64, 2 ** 64 + 1, -2 ** 63, 10 ** 30)
INTERESTING_STRINGS = ("", "F16", "BF16", "F32", "I32", "I64", "U8", "F8_E4M3", "Q4", "awq", "gptq", "gptq_v2", "GEMM",
                       "compressed-tensors", "pack-quantized", "../x.safetensors", "/etc/passwd", "a/b", "..", ".",
                       "model.safetensors", "x\x00y", "\x1b[31m", "[bold]", "é", "\ud800x")


class Chooser:
    """Where a mutator's choices come from."""

    def int(self, lo: int, hi: int) -> int:
        raise NotImplementedError

    def bytes(self, n: int) -> bytes:
        return bytes(self.int(0, 255) for _ in range(n))

    def choice(self, seq):
        return seq[self.int(0, len(seq) - 1)]

    def coin(self, p_true: float = 0.5) -> bool:
        return self.int(0, 999) < int(p_true * 1000)


class RandomChooser(Chooser):
    def __init__(self, rng):
        self.rng = rng

    def int(self, lo, hi):
        return self.rng.randint(lo, hi)

    def bytes(self, n):
        return self.rng.randbytes(n)


class HypothesisChooser(Chooser):
    def __init__(self, data):
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def int(self, lo, hi):
        return self.data.draw(self.st.integers(lo, hi))

    def bytes(self, n):
        return self.data.draw(self.st.binary(min_size=n, max_size=n))


# ---- seeds ---------------------------------------------------------------------------------------------------

def make_seeds(fixtures: dict, dst: Path) -> list[Path]:
    """Small copies of real checkpoints: the listed modules only, with their configs (and an index for some)."""
    seeds = []
    for name, keep in SEED_MODULES.items():
        src = fixtures[name][0]
        d = dst / name
        d.mkdir(parents=True)
        for f in src.iterdir():
            if f.suffix == ".json" and not f.name.endswith(".index.json"):
                shutil.copy(f, d / f.name)
        shards = sorted(src.glob("*.safetensors"))
        raw = Raw.read(shards[0])
        out = Raw({}, bytearray(), metadata=raw.metadata)
        for t in raw.names():
            if any(k in t for k in keep):
                out.add(t, raw.get(t), raw.dtype(t))
        out.save(d / "model.safetensors")
        if name in SHARDED_SEEDS:
            shard_checkpoint(d, 2)
        seeds.append(d)
    return seeds


# ---- mutators ------------------------------------------------------------------------------------------------

def random_json(ch: Chooser, depth: int = 0):
    kind = ch.int(0, 9 if depth < 3 else 5)
    if kind == 0:
        return ch.choice(INTERESTING_INTS)
    if kind == 1:
        return ch.int(-300, 300)
    if kind == 2:
        return ch.choice((0.5, -1.0, 4.0, 1e308, -0.0, math.nan, math.inf, -math.inf))
    if kind == 3:
        return ch.choice(INTERESTING_STRINGS)
    if kind == 4:
        return ch.choice((None, True, False))
    if kind == 5:
        return ch.bytes(ch.int(0, 6)).decode("latin-1")
    if kind in (6, 7):
        return [random_json(ch, depth + 1) for _ in range(ch.int(0, 3))]
    return {ch.choice(("dtype", "shape", "data_offsets", "a", "__metadata__")): random_json(ch, depth + 1) for _ in range(ch.int(0, 3))}


def _split(blob: bytes):
    """-> (header dict, data bytes) of a valid safetensors blob."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def mutate_bytes(blob: bytes, ch: Chooser, other: bytes = b"") -> bytes:
    """Byte-level damage, biased towards the length field and the header where the parser lives."""
    out = bytearray(blob)
    header_end = 8 + struct.unpack("<Q", blob[:8])[0] if len(blob) >= 8 else len(blob)
    for _ in range(ch.int(1, 4)):
        size = len(out)
        region = header_end if ch.coin(0.7) and header_end > 0 else max(size, 1)
        pos = ch.int(0, max(region - 1, 0))
        op = ch.int(0, 7)
        if op == 0 and size:  # flip one bit
            out[min(pos, size - 1)] ^= 1 << ch.int(0, 7)
        elif op == 1:  # truncate
            del out[ch.int(0, size):]
        elif op == 2:  # overwrite a few bytes
            chunk = ch.bytes(ch.int(1, 16))
            out[pos:pos + len(chunk)] = chunk
        elif op == 3:  # insert
            out[pos:pos] = ch.bytes(ch.int(1, 16))
        elif op == 4:  # delete a run
            del out[pos:pos + ch.int(1, 64)]
        elif op == 5 and other:  # splice in a chunk of another real file
            start = ch.int(0, len(other) - 1)
            out[pos:pos + ch.int(0, 64)] = other[start:start + ch.int(1, 256)]
        elif op == 6:  # a hostile length field
            out[:8] = struct.pack("<Q", ch.choice(INTERESTING_INTS) % 2 ** 64 if ch.coin() else max(header_end - 8 + ch.int(-9, 9), 0))
        elif op == 7 and size:  # a printable byte where JSON punctuation was
            out[min(pos, size - 1)] = ord(ch.choice(b'{}[]",:0123456789-. e'.decode()))
    return bytes(out)


def mutate_header(blob: bytes, ch: Chooser) -> bytes:
    """Structured damage to the header JSON (valid JSON, hostile content), then re-serialised."""
    header, data = _split(blob)
    names = [k for k in header if k != "__metadata__"]
    dup_text = None
    for _ in range(ch.int(1, 3)):
        op = ch.int(0, 9)
        name = ch.choice(names) if names else "x"
        e = header.get(name)
        if op <= 3 and isinstance(e, dict):  # replace one field of one entry
            e[ch.choice(("dtype", "shape", "data_offsets"))] = random_json(ch)
        elif op == 4 and isinstance(e, dict):  # nudge an offset or a dim
            key = ch.choice(("shape", "data_offsets"))
            if isinstance(e.get(key), list) and e[key]:
                i = ch.int(0, len(e[key]) - 1)
                if isinstance(e[key][i], int):
                    e[key][i] += ch.choice((-1, 1, -4, 4, 8, -8, 2 ** 32, -2 ** 32))
        elif op == 5 and isinstance(e, dict):  # swap two tensors' offsets
            other = header.get(ch.choice(names))
            if isinstance(other, dict):
                e["data_offsets"], other["data_offsets"] = other.get("data_offsets"), e.get("data_offsets")
        elif op == 6:  # drop or rename an entry
            value = header.pop(name, None)
            if ch.coin() and value is not None:
                header[name[:-ch.int(1, 3)] + ch.choice(("", "x", ".qweight", ".scales", ".g_idx"))] = value
        elif op == 7:  # hostile metadata
            header["__metadata__"] = random_json(ch)
        elif op == 8:  # an entry that is not an object, or a new random one
            header[ch.choice(INTERESTING_STRINGS) + str(ch.int(0, 9))] = random_json(ch)
        elif op == 9 and names:  # a duplicated key (json.dumps cannot write one)
            dup_text = (name, header.get(name))
    text = json.dumps(header, allow_nan=True)
    if dup_text is not None:
        text = "{" + json.dumps(dup_text[0]) + ":" + json.dumps(dup_text[1]) + "," + text[1:]
    length = None if ch.coin(0.85) else ch.choice(INTERESTING_INTS) % 2 ** 64
    return file_bytes(text, data, length=length, pad=ch.coin())


SHORT_NAMES = ("qweight", "qzeros", "scales", "g_idx", "bias", "weight_packed", "weight_scale", "weight_zero_point",
               "weight_shape", "weight_g_idx", "weight")
FILL_WORDS = (0, 1, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x77777777, 0x88888888, 0x7C007C00, 0x7E007E00, 0x80008000, 0xFFC0FFC0)


def mutate_tensors(raw: Raw, ch: Chooser) -> Raw:
    """A still-valid safetensors file whose tensors are hostile: random or extreme values, other shapes and
    dtypes, dropped, renamed or duplicated tensors. Exercises the module and value rules, not the parser."""
    import numpy as np

    from craft import NP_DTYPE

    for _ in range(ch.int(1, 3)):
        names = raw.names()
        if not names:
            return raw
        name = ch.choice(names)
        arr, dtype = raw.get(name), raw.dtype(name)
        op = ch.int(0, 7)
        if op <= 1:  # random or extreme contents, same shape and dtype
            flat = np.frombuffer(bytearray(arr.tobytes()), dtype=np.uint8).copy()
            if flat.size:
                if ch.coin():
                    n = min(flat.size, ch.int(1, 64))
                    start = ch.int(0, flat.size - n)
                    flat[start:start + n] = np.frombuffer(ch.bytes(n), dtype=np.uint8)
                else:
                    word = np.array([ch.choice(FILL_WORDS)], dtype=np.uint32).view(np.uint8)
                    flat[:] = np.resize(word, flat.size)
            raw.set(name, flat.view(NP_DTYPE[dtype]).reshape(arr.shape), dtype)
        elif op == 2 and arr.ndim:  # slice one axis (possibly to zero length)
            axis = ch.int(0, arr.ndim - 1)
            raw.set(name, np.take(arr, np.arange(ch.int(0, arr.shape[axis])), axis=axis), dtype)
        elif op == 3:  # transpose / flatten / add an axis
            raw.set(name, ch.choice((arr.T, arr.reshape(-1), arr[None])), dtype)
        elif op == 4:  # same bytes, another dtype
            new = ch.choice(("I32", "F32", "F16", "BF16", "I64", "U8", "F64", "I8", "U32", "BOOL"))
            size = np.dtype(NP_DTYPE[new]).itemsize
            if arr.nbytes % size == 0:
                raw.set(name, np.frombuffer(arr.tobytes(), dtype=NP_DTYPE[new]), new)
        elif op == 5:
            raw.drop(name)
        elif op == 6:  # rename to another role or module
            prefix = name.rpartition(".")[0]
            other = ch.choice(names).rpartition(".")[0] if ch.coin() else prefix
            new = f"{other}.{ch.choice(SHORT_NAMES)}"
            if new not in names:
                raw.rename(name, new)
        else:  # small integer tensors with extreme values (g_idx, weight_shape)
            vals = np.array([ch.choice(INTERESTING_INTS) % 2 ** 63 * ch.choice((1, -1)) for _ in range(ch.int(0, 4))] or [0], dtype=np.int64)
            target = ch.choice([n for n in names if n.endswith(("g_idx", "weight_shape"))] or [name])
            old = raw.get(target)
            if target.endswith(("g_idx", "weight_shape")) and old.size:
                new = np.resize(vals, old.shape).astype(NP_DTYPE[raw.dtype(target)]) if raw.dtype(target) in ("I32", "I64") else old
                raw.set(target, new, raw.dtype(target))
    return raw


CONFIG_KEYS = ("bits", "w_bit", "group_size", "q_group_size", "quant_method", "version", "checkpoint_format", "format",
               "sym", "zero_point", "desc_act", "modules_to_not_convert", "ignore", "config_groups")


def mutate_config(obj, ch: Chooser):
    """Hostile values in a config object (config.json's quantization_config, or a side file)."""
    for _ in range(ch.int(1, 3)):
        if not isinstance(obj, dict) or ch.coin(0.05):
            return random_json(ch)
        key = ch.choice(CONFIG_KEYS)
        if ch.coin(0.2):
            obj.pop(key, None)
        elif key == "config_groups" and ch.coin(0.5):
            obj[key] = {"group_0": {"weights": {"num_bits": random_json(ch), "group_size": random_json(ch),
                                                "symmetric": random_json(ch), "strategy": random_json(ch)}}}
        elif key in ("modules_to_not_convert", "ignore") and ch.coin(0.5):
            obj[key] = ["re:" + ch.choice((".*", "(a+)+$", ".*k_proj", "[", "model\\.layers\\.0.*")), ch.choice(INTERESTING_STRINGS)]
        else:
            obj[key] = random_json(ch) if ch.coin(0.6) else ch.choice(INTERESTING_INTS + INTERESTING_STRINGS)
    return obj


def mutate_index(obj, shards: list[str], ch: Chooser):
    for _ in range(ch.int(1, 3)):
        if not isinstance(obj, dict) or ch.coin(0.05):
            return random_json(ch)
        wm = obj.get("weight_map")
        op = ch.int(0, 4)
        if op == 0 or not isinstance(wm, dict) or not wm:
            obj[ch.choice(("weight_map", "metadata"))] = random_json(ch)
        elif op == 1:
            wm[ch.choice(list(wm))] = ch.choice(INTERESTING_STRINGS + tuple(shards)) if ch.coin(0.8) else random_json(ch)
        elif op == 2:
            wm.pop(ch.choice(list(wm)))
        elif op == 3:
            wm[ch.choice(list(wm)) + ch.choice(("", "x", ".qzeros"))] = ch.choice(shards)
        else:
            obj["metadata"] = {"total_size": random_json(ch)}
    return obj


# ---- one input -----------------------------------------------------------------------------------------------

class Hang(Exception):
    pass


@contextmanager
def alarm(seconds: int):
    """Turn a hang into an exception (main thread, POSIX)."""
    def fire(signum, frame):
        raise Hang(f"check did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class Outcome:
    kind: str  # what was mutated: bytes | header | config | index
    target: str  # the file that was mutated
    status: int  # the exit status the CLI would give: 0 or 1
    library_rejects: bool | None  # the reference safetensors library refuses the mutated file (None: not a safetensors file)
    error_codes: set[str] = field(default_factory=set)


def library_rejects(blob: bytes) -> bool:
    """The reference (Rust) parser's verdict. `deserialize` validates header and offsets without converting to
    numpy (safetensors.numpy cannot represent BF16, which would count as a false refusal)."""
    from safetensors import deserialize

    try:
        deserialize(blob)
    except Exception:  # noqa: BLE001 - any refusal by the reference implementation counts
        return True
    return False


def mutate_checkpoint(seed: Path, work: Path, ch: Chooser, other_blob: bytes = b"") -> tuple[str, str, bytes | None]:
    """Fresh copy of `seed` in `work` with one kind of damage. -> (kind, mutated file name, its safetensors bytes)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(seed, work)
    shards = sorted(p.name for p in work.glob("*.safetensors"))
    kinds = ["bytes", "bytes", "header", "header", "tensor", "tensor", "config"] + (["index"] if (work / "model.safetensors.index.json").exists() else [])
    kind = ch.choice(kinds)
    if kind == "tensor":
        target = ch.choice(shards)
        blob = mutate_tensors(Raw.read(work / target), ch).to_bytes()
        (work / target).write_bytes(blob)
        return kind, target, blob
    if kind in ("bytes", "header"):
        target = ch.choice(shards)
        blob = (work / target).read_bytes()
        blob = mutate_bytes(blob, ch, other_blob) if kind == "bytes" else mutate_header(blob, ch)
        (work / target).write_bytes(blob)
        return kind, target, blob
    if kind == "index":
        path = work / "model.safetensors.index.json"
        obj = mutate_index(json.loads(path.read_text()), shards, ch)
        path.write_text(json.dumps(obj, allow_nan=True) if ch.coin(0.9) else json.dumps(obj)[: ch.int(0, 40)])
        return kind, path.name, None
    configs = sorted(p.name for p in work.glob("*.json") if not p.name.endswith(".index.json"))
    target = ch.choice(configs)
    path = work / target
    obj = json.loads(path.read_text())
    if target == "config.json" and isinstance(obj.get("quantization_config"), dict) and ch.coin(0.9):
        obj["quantization_config"] = mutate_config(obj["quantization_config"], ch)
    else:
        obj = mutate_config(obj, ch)
    path.write_text(json.dumps(obj, allow_nan=True))
    return kind, target, None


def run_check(path: Path, deep: bool, timeout_s: int = 30) -> tuple[int, set[str], list]:
    """check + the rich report + the JSON, as the CLI does them. -> (exit status, error codes, findings)."""
    from rich.console import Console

    from awqfmt.check import check_path
    from awqfmt.report import render_check

    with alarm(timeout_s):
        result = check_path(path, deep=deep)
        render_check(result, Console(file=io.StringIO(), width=100))
        json.dumps(result.to_json())
    errors = {f.code for f in result.findings if f.severity.value == "error"}
    return (1 if result.errors else 0), errors, result.findings


def fuzz_one(seeds: list[Path], work: Path, ch: Chooser, deep: bool | None = None) -> Outcome:
    seed = ch.choice(seeds)
    other = ch.choice(seeds)
    other_blob = next(iter(sorted(other.glob("*.safetensors")))).read_bytes()
    kind, target, blob = mutate_checkpoint(seed, work, ch, other_blob)
    status, errors, findings = run_check(work, deep=ch.coin(0.3) if deep is None else deep)
    rejects = library_rejects(blob) if blob is not None else None
    outcome = Outcome(kind, target, status, rejects, errors)
    check_contract(outcome, findings)
    return outcome


def check_contract(o: Outcome, findings) -> None:
    assert o.status in (0, 1)
    if o.library_rejects:
        # a file the reference loader refuses must get an error naming that file
        on_file = [f for f in findings if f.severity.value == "error" and f.file == o.target]
        assert on_file, f"safetensors refuses the mutated {o.target} but check reports no error on it ({sorted(o.error_codes)})"
