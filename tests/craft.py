"""Craft safetensors checkpoints byte by byte, good or deliberately broken, for the rule and hostile-input tests.

Two levels:
- `file_bytes(header, data, length=...)` writes exactly the bytes you ask for: any header (a dict, JSON text,
  or raw bytes that need not be UTF-8 or JSON), any 8-byte length field, any data. Nothing is validated.
- `Raw` holds a parsed (header, data) pair read from a real fixture. Change, add, drop or rename tensors,
  then `save()`: offsets are recomputed so the file stays valid except for the one defect a test introduces.
  `copy_fixture` + `Raw.edit` + `edit_config` give "a real checkpoint with exactly one thing wrong".
"""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path
from typing import Any, Callable

import numpy as np

# numpy dtype -> safetensors dtype name (BF16 is passed explicitly: numpy has no bfloat16)
ST_DTYPE = {
    np.dtype("float64"): "F64", np.dtype("float32"): "F32", np.dtype("float16"): "F16",
    np.dtype("int64"): "I64", np.dtype("int32"): "I32", np.dtype("int16"): "I16", np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64", np.dtype("uint32"): "U32", np.dtype("uint16"): "U16", np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}
NP_DTYPE = {v: k for k, v in ST_DTYPE.items()} | {"BF16": np.dtype("uint16"), "F8_E4M3": np.dtype("uint8"), "F8_E5M2": np.dtype("uint8")}


def header_text(header: dict | str | bytes, pad: bool = True) -> bytes:
    """Header bytes: a dict is dumped as compact JSON; str is encoded; bytes are used as is.
    `pad` adds spaces to an 8-byte multiple, as the reference writer does."""
    if isinstance(header, dict):
        raw = json.dumps(header, separators=(",", ":")).encode()
    elif isinstance(header, str):
        raw = header.encode()
    else:
        raw = bytes(header)
    if pad and len(raw) % 8:
        raw += b" " * (8 - len(raw) % 8)
    return raw


def file_bytes(header: dict | str | bytes, data: bytes = b"", *, length: int | None = None, pad: bool = True) -> bytes:
    """8-byte little-endian length (the true header length unless `length` overrides it) + header + data."""
    h = header_text(header, pad=pad)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + bytes(data)


def entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, end]}


def _as_stored(value: np.ndarray | tuple[np.ndarray, str]) -> tuple[np.ndarray, str]:
    if isinstance(value, tuple):
        arr, dtype = value
        return np.ascontiguousarray(np.asarray(arr, dtype=NP_DTYPE[dtype])), dtype
    arr = np.ascontiguousarray(value)
    return arr, ST_DTYPE[arr.dtype]


def safetensors_bytes(tensors: dict[str, np.ndarray | tuple[np.ndarray, str]], metadata: dict | None = None) -> bytes:
    """A valid safetensors file from arrays (`(array, "BF16")` tuples give dtypes numpy lacks)."""
    raw = Raw({}, bytearray(), metadata=metadata)
    for name, value in tensors.items():
        raw.add(name, *_as_stored(value))
    return raw.to_bytes()


class Raw:
    """A safetensors file as an ordered header + data buffer that tests can edit."""

    def __init__(self, header: dict, data: bytearray, metadata: dict | None = None):
        self.header = header  # name -> entry (without __metadata__)
        self.data = data
        self.metadata = metadata

    # -- io --------------------------------------------------------------------------------------------
    @classmethod
    def read(cls, path: str | Path) -> "Raw":
        blob = Path(path).read_bytes()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n])
        meta = header.pop("__metadata__", None)
        return cls(header, bytearray(blob[8 + n:]), metadata=meta)

    def to_bytes(self, **kw) -> bytes:
        """Re-lay the tensors contiguously in header order and serialise (kw go to `file_bytes`)."""
        header: dict[str, Any] = {}
        if self.metadata is not None:
            header["__metadata__"] = self.metadata
        data = bytearray()
        for name, e in self.header.items():
            chunk = self.data[e["data_offsets"][0]:e["data_offsets"][1]]
            header[name] = entry(e["dtype"], e["shape"], len(data), len(data) + len(chunk))
            data += chunk
        return file_bytes(header, bytes(data), **kw)

    def save(self, path: str | Path, **kw) -> Path:
        Path(path).write_bytes(self.to_bytes(**kw))
        return Path(path)

    # -- tensors ---------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return list(self.header)

    def get(self, name: str) -> np.ndarray:
        """A writable copy of a tensor in its storage dtype (BF16 as uint16)."""
        e = self.header[name]
        b, en = e["data_offsets"]
        return np.frombuffer(bytes(self.data[b:en]), dtype=NP_DTYPE[e["dtype"]]).reshape(e["shape"]).copy()

    def dtype(self, name: str) -> str:
        return self.header[name]["dtype"]

    def set(self, name: str, array: np.ndarray, dtype: str | None = None) -> "Raw":
        """Replace a tensor (shape and dtype may change; the data region is rebuilt)."""
        dtype = dtype or ST_DTYPE[np.asarray(array).dtype]
        arr = np.ascontiguousarray(np.asarray(array, dtype=NP_DTYPE[dtype]))
        chunks = {n: bytes(self.data[e["data_offsets"][0]:e["data_offsets"][1]]) for n, e in self.header.items()}
        chunks[name] = arr.tobytes()
        shapes = {n: (e["dtype"], e["shape"]) for n, e in self.header.items()}
        shapes[name] = (dtype, list(arr.shape))
        self._rebuild(chunks, shapes)
        return self

    def add(self, name: str, array: np.ndarray, dtype: str | None = None) -> "Raw":
        self.header[name] = entry(dtype or ST_DTYPE[np.asarray(array).dtype], [], len(self.data), len(self.data))
        return self.set(name, array, dtype)

    def drop(self, name: str) -> "Raw":
        chunks = {n: bytes(self.data[e["data_offsets"][0]:e["data_offsets"][1]]) for n, e in self.header.items() if n != name}
        shapes = {n: (e["dtype"], e["shape"]) for n, e in self.header.items() if n != name}
        self._rebuild(chunks, shapes)
        return self

    def rename(self, old: str, new: str) -> "Raw":
        self.header = {(new if n == old else n): e for n, e in self.header.items()}
        return self

    def edit(self, name: str, fn: Callable[[np.ndarray], np.ndarray | None], dtype: str | None = None) -> "Raw":
        """Apply fn to a copy of the tensor (fn may modify it in place and return None, or return a new array) and
        store the result, cast to the tensor's dtype unless `dtype` names another."""
        arr = self.get(name)
        out = fn(arr)
        return self.set(name, arr if out is None else out, dtype or self.dtype(name))

    def _rebuild(self, chunks: dict[str, bytes], shapes: dict[str, tuple[str, list]]) -> None:
        header, data = {}, bytearray()
        for n, chunk in chunks.items():
            dt, shape = shapes[n]
            header[n] = entry(dt, shape, len(data), len(data) + len(chunk))
            data += chunk
        self.header, self.data = header, data


# ---- whole checkpoints ----------------------------------------------------------------------------------

def copy_fixture(src: str | Path, dst: str | Path) -> Path:
    """Copy a fixture checkpoint directory (real files, so tests may edit them)."""
    dst = Path(dst)
    shutil.copytree(src, dst)
    return dst


def edit_model(directory: str | Path, fn: Callable[[Raw], Any], file: str = "model.safetensors") -> Path:
    """Read a checkpoint's safetensors file, let fn edit the Raw, write it back."""
    path = Path(directory) / file
    raw = Raw.read(path)
    fn(raw)
    return raw.save(path)


_KEEP = object()


def edit_config(directory: str | Path, fn: Callable[[dict], Any] | None = None, file: str = "config.json",
                section: str | None = "quantization_config", replace: Any = _KEEP) -> Path:
    """Edit a JSON config in place. For config.json, fn gets the quantization_config section (section=None: the
    whole object). fn edits in place, or returns a dict that replaces it; `replace` sets any JSON value instead."""
    path = Path(directory) / file
    obj = json.loads(path.read_text())
    in_section = file == "config.json" and section is not None
    target = obj[section] if in_section else obj
    out = fn(target) if fn is not None else None
    new = replace if replace is not _KEEP else out if isinstance(out, dict) else target
    if in_section:
        obj[section] = new
    else:
        obj = new
    path.write_text(json.dumps(obj, indent=2))
    return path


def module_names(raw: Raw, short: str) -> list[str]:
    """Full names of every tensor ending in `.short` (e.g. every qzeros)."""
    return [n for n in raw.names() if n.endswith("." + short)]


# ---- running check the way a user does -------------------------------------------------------------------

def check_cli(path: str | Path, *args: str) -> tuple[int, dict]:
    """Run `awqfmt check PATH --json ARGS` through the real typer app -> (exit status, parsed JSON report).
    An exception escaping the app (a bug: the user would see exit 3) fails the calling test."""
    from typer.testing import CliRunner

    from awqfmt.cli import app

    result = CliRunner().invoke(app, ["check", str(path), "--json", *args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"check raised {type(result.exception).__name__}: {result.exception}") from result.exception
    doc = json.loads(result.stdout) if result.exit_code in (0, 1) else {}
    return result.exit_code, doc


def findings(doc: dict, code: str) -> list[dict]:
    return [f for f in doc.get("findings", []) if f["code"] == code]


def assert_finding(doc: dict, code: str, *, tensor: str | None = None, file: str | None = None, module: str | None = None,
                   severity: str | None = None) -> dict:
    """The report holds a finding with this code (and, when given, exactly this tensor / file / module / severity)."""
    hits = findings(doc, code)
    assert hits, f"no {code} finding; got {sorted({f['code'] for f in doc.get('findings', [])})}"
    for want, key in ((tensor, "tensor"), (file, "file"), (module, "module"), (severity, "severity")):
        if want is not None:
            hits = [f for f in hits if f[key] == want]
            assert hits, f"{code} findings name {key} {sorted({str(f[key]) for f in findings(doc, code)})}, not {want!r}"
    return hits[0]


def codes(doc: dict, severity: str | None = None) -> set[str]:
    return {f["code"] for f in doc.get("findings", []) if severity is None or f["severity"] == severity}


def shard_checkpoint(directory: str | Path, n: int = 2, file: str = "model.safetensors") -> dict:
    """Split a checkpoint's single safetensors file into n shards plus a transformers-style index, in place.
    -> the index object (also written to model.safetensors.index.json)."""
    directory = Path(directory)
    raw = Raw.read(directory / file)
    (directory / file).unlink()
    names = raw.names()
    per = -(-len(names) // n)
    weight_map, total = {}, 0
    for i in range(n):
        shard = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        part = Raw({}, bytearray(), metadata={"format": "pt"})
        for name in names[i * per:(i + 1) * per]:
            part.add(name, raw.get(name), raw.dtype(name))
            weight_map[name] = shard
            total += len(part.get(name).tobytes())
        part.save(directory / shard)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return index


def edit_index(directory: str | Path, fn: Callable[[dict], Any], file: str = "model.safetensors.index.json") -> Path:
    path = Path(directory) / file
    obj = json.loads(path.read_text())
    out = fn(obj)  # edits in place; a returned dict replaces the object (other return values are ignored)
    path.write_text(json.dumps(out if isinstance(out, dict) else obj, indent=2))
    return path
