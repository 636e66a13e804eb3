"""A strict, memory-mapped safetensors reader that turns every defect into a finding instead of an exception.

The format (huggingface/safetensors README): 8-byte little-endian header length N, N bytes of UTF-8 JSON
object `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}`, then the data buffer.
Offsets are relative to the buffer, must be contiguous, in bounds, without overlap or holes, and
`end - begin == prod(shape) * itemsize`. This module enforces exactly that, reading only the header until a
tensor is asked for. Tensor data are read-only memory-mapped views (no copies): small tensors share one map of
the file, large ones get a map of their own that goes away with the array.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dtypes
from .findings import Finding, error

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's own limit
MAX_ELEMENTS = 1 << 48
OWN_MAP_BYTES = 1 << 20  # tensors this large are mapped on their own (see SafetensorsFile.array)  # far beyond any real tensor; stops overflow and giant allocations early
# First bytes of the pickled formats people rename to .safetensors: torch.save's zip archive and raw pickle
# (protocol 2+ starts with PROTO 0x80 and the protocol number).
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
PICKLE_HINT = ("awqfmt never unpickles (loading a pickle runs arbitrary code). Convert it in a sandbox you trust, e.g. "
               "`python -c \"import torch, safetensors.torch as st; st.save_file(torch.load('F', weights_only=True), 'model.safetensors')\"`, "
               "then check the .safetensors file")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # relative to the data buffer
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


class _DuplicateKeys(dict):
    """object_pairs_hook result that remembers duplicate keys (json.loads silently keeps the last)."""

    duplicates: list[str]


def _pairs_hook(pairs):
    out = _DuplicateKeys(pairs)  # built in C: a 100k-tensor header calls this once per entry
    out.duplicates = [] if len(out) == len(pairs) else _repeated_keys(pairs)
    return out


def _repeated_keys(pairs) -> list:
    seen, dups = set(), []
    for k, _ in pairs:
        if k in seen:
            dups.append(k)
        seen.add(k)
    return dups


def loads_checked(text: str):
    """json.loads that records duplicate keys of every object in `.duplicates` (shared by the index reader)."""
    return json.loads(text, object_pairs_hook=_pairs_hook)


_ITEMSIZE = {name: dt.itemsize for name, dt in dtypes.STORAGE.items()}


def _well_formed_entry(name: str, e) -> TensorEntry | None:
    """The common case in a few type tests (a 100k-tensor checkpoint has 100k entries): exactly dtype, shape and
    data_offsets, each valid and consistent. Anything else is None and goes through `_parse_entry`'s rules, which
    accept exactly these entries too and name what is wrong with the others."""
    if type(e) is not _DuplicateKeys or len(e) != 3 or e.duplicates:
        return None
    dtype, shape, offs = e.get("dtype"), e.get("shape"), e.get("data_offsets")
    if type(offs) is not list or len(offs) != 2 or type(shape) is not list or type(dtype) is not str:
        return None
    begin, end = offs
    size = _ITEMSIZE.get(dtype)
    if size is None or type(begin) is not int or type(end) is not int or not 0 <= begin <= end < 1 << 62:
        return None
    numel = 1
    for d in shape:
        if type(d) is not int or d < 0:
            return None
        numel *= d
        if numel > MAX_ELEMENTS:
            return None
    if end - begin != numel * size:
        return None
    return TensorEntry(name, dtype, tuple(shape), begin, end)


class SafetensorsFile:
    """Parse one .safetensors file. `findings` holds every integrity problem; `entries` only the usable tensors."""

    def __init__(self, path: str | os.PathLike, display_name: str | None = None):
        self.path = Path(path)
        self.name = display_name or self.path.name
        self.findings: list[Finding] = []
        self.entries: dict[str, TensorEntry] = {}
        self.metadata: dict[str, str] | None = None
        self.header_ok = False
        self.data_offset = 0
        self.file_size = 0
        self._mmap: np.memmap | None = None
        self._parse()

    # -- parsing ---------------------------------------------------------------------------------------
    def _err(self, code: str, message: str, hint: str | None = None, tensor: str | None = None, **evidence):
        self.findings.append(error(code, message, hint=hint, file=self.name, tensor=tensor, evidence=evidence))

    def _parse(self) -> None:
        try:
            self.file_size = self.path.stat().st_size
            with open(self.path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    self._err("file.too-small", f"file is {self.file_size} bytes; a safetensors file starts with an 8-byte header length",
                              "the download or copy was cut short: fetch the file again")
                    return
                n = int.from_bytes(head, "little")
                if head.startswith(PICKLE_MAGIC):
                    self._err("file.pickle", "this is a pickled PyTorch checkpoint (zip or pickle magic bytes), not safetensors; awqfmt does not open it",
                              PICKLE_HINT)
                    return
                if n == 0 or n > self.file_size - 8 or n > MAX_HEADER_BYTES:
                    why = ("is 0" if n == 0 else f"exceeds the file ({self.file_size} bytes)" if n > self.file_size - 8
                           else f"exceeds the {MAX_HEADER_BYTES // 2**20} MiB limit")
                    self._err("file.header-length", f"header length field {n} {why}",
                              "the file is truncated or not a safetensors file (a pickle .bin renamed?)", header_length=n)
                    return
                raw = fh.read(n)
        except OSError as exc:
            self._err("file.unreadable", f"cannot read file: {exc.strerror or exc}", "check the path and permissions")
            return
        self.data_offset = 8 + n
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._err("file.header-utf8", f"header is not valid UTF-8 (byte {exc.start})", "the header is corrupt: re-export the file")
            return
        try:
            header = loads_checked(text)
        except RecursionError:
            self._err("file.header-json", "header JSON is nested too deeply to be a safetensors header", "the header is corrupt or hostile")
            return
        except ValueError as exc:
            self._err("file.header-json", f"header is not valid JSON: {exc}", "the header is corrupt: re-export the file")
            return
        if not isinstance(header, dict):
            self._err("file.header-not-object", f"header JSON is a {type(header).__name__}, not an object", "the header is corrupt")
            return
        for dup in getattr(header, "duplicates", []):
            self._err("file.duplicate-key", f"tensor {dup!r} appears twice in the header (readers keep only one)", "re-export the file", tensor=dup)
        self.header_ok = True
        meta = header.pop("__metadata__", None)
        if meta is not None:
            if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
                self._err("file.metadata-type", "__metadata__ must map strings to strings", "safetensors' loaders reject this file; rewrite __metadata__")
            else:
                self.metadata = dict(meta)
        self._parse_entries(header)

    def _parse_entries(self, header: dict) -> None:
        data_size = self.file_size - self.data_offset
        spans: list[tuple[str, int, int]] = []  # every entry whose offsets parse, usable or not: for the coverage rule
        entries: list[TensorEntry] = []
        for name, e in header.items():
            entry = self._parse_entry(name, e, spans)
            if entry is None:
                continue
            if entry.end > data_size:
                self._err("tensor.out-of-bounds", f"data [{entry.begin}, {entry.end}) ends past the data buffer ({data_size} bytes): file truncated",
                          "the file was cut short: fetch it again", tensor=name, end=entry.end, data_size=data_size)
                continue
            entries.append(entry)
        self._check_coverage(spans, data_size)
        self.entries = {e.name: e for e in entries}

    def _parse_entry(self, name: str, e, spans: list) -> TensorEntry | None:
        entry = _well_formed_entry(name, e)
        if entry is not None:
            spans.append((name, entry.begin, entry.end))
            return entry
        if not isinstance(e, dict) or "dtype" not in e or "shape" not in e or "data_offsets" not in e:
            self._err("tensor.entry-malformed", "header entry must be an object with dtype, shape and data_offsets", "re-export the file", tensor=name)
            return None
        if getattr(e, "duplicates", None):
            self._err("tensor.entry-malformed", f"header entry repeats key(s) {sorted(set(e.duplicates))} (readers keep only one)",
                      "the header is corrupt or hostile: re-export the file", tensor=name)
            return None
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if not (type(offs) is list and len(offs) == 2 and type(offs[0]) is int and type(offs[1]) is int and offs[0] >= 0 and offs[1] >= 0):
            self._err("tensor.entry-malformed", f"data_offsets {str(offs)[:80]} must be two non-negative integers", "re-export the file", tensor=name)
            return None
        begin, end = offs
        if end < begin:
            self._err("tensor.offsets-reversed", f"data_offsets [{begin}, {end}] end before they begin", "the header is corrupt", tensor=name)
            return None
        spans.append((name, min(begin, 1 << 62), min(end, 1 << 62)))  # clamped: offsets past 2^62 are out of bounds anyway
        if not isinstance(dtype, str) or dtype not in dtypes.STORAGE:
            self._err("tensor.unknown-dtype", f"unknown dtype {str(dtype)[:40]!r}", f"known dtypes: {', '.join(dtypes.STORAGE)}", tensor=name)
            return None
        if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
            self._err("tensor.bad-shape", f"shape {str(shape)[:80]} is not a list of non-negative integers", "re-export the file", tensor=name)
            return None
        numel = 1
        for d in shape:
            numel *= d
            if numel > MAX_ELEMENTS:
                self._err("tensor.bad-shape", f"shape {str(shape[:8])[:80]} has more than 2^48 elements", "the header is corrupt or hostile", tensor=name)
                return None
        want = numel * dtypes.itemsize(dtype)
        if end - begin != want:
            self._err("tensor.size-mismatch", f"holds {end - begin} bytes but shape {str(shape)[:80]} x {dtype} needs {want}",
                      "the header and data disagree: re-export the file", tensor=name, have=end - begin, need=want)
            return None
        return TensorEntry(name, dtype, tuple(shape), begin, end)

    def _check_coverage(self, spans: list[tuple[str, int, int]], data_size: int) -> None:
        """Offsets must tile the data buffer exactly: no overlap, no hole, nothing after the last tensor."""
        if not spans:
            if data_size > 0:
                self._err("file.trailing-bytes", f"{data_size} data bytes but no tensor uses them",
                          "the safetensors library refuses such a file ('incomplete metadata, file not fully covered'): re-export it",
                          trailing=data_size)
            return
        begins = np.fromiter((s[1] for s in spans), dtype=np.int64, count=len(spans))
        ends = np.fromiter((s[2] for s in spans), dtype=np.int64, count=len(spans))
        # sort by (begin, end): a zero-length tensor sharing its offset with the next tensor's start is valid
        order = np.lexsort((ends, begins))
        b, en = begins[order], ends[order]
        reach = np.maximum.accumulate(en)  # furthest byte covered so far: a span inside an earlier one overlaps it too
        overlaps = np.nonzero(b[1:] < reach[:-1])[0]
        gaps = np.nonzero(b[1:] > reach[:-1])[0]
        for i in overlaps[:20]:
            (na, ba, ea), (nc, bc, ec) = spans[order[i]], spans[order[i + 1]]
            self._err("file.overlap", f"data of {nc!r} [{bc}, {ec}) overlaps earlier tensor data (up to byte {int(reach[i])}; previous: {na!r} [{ba}, {ea}))",
                      "the header is corrupt or hostile: two tensors share bytes", tensor=nc)
        for i in gaps[:20]:
            na, nc = spans[order[i]][0], spans[order[i + 1]][0]
            self._err("file.gap", f"{int(b[i + 1] - reach[i])} unused bytes between {na!r} and {nc!r}",
                      "safetensors requires contiguous data; re-export the file", tensor=nc)
        if b[0] > 0:
            self._err("file.gap", f"{int(b[0])} unused bytes before the first tensor", "re-export the file")
        last = int(reach[-1])
        if last < data_size:
            self._err("file.trailing-bytes", f"{data_size - last} bytes after the last tensor",
                      "the safetensors library refuses such a file ('incomplete metadata, file not fully covered'): re-export it",
                      trailing=data_size - last)

    # -- data ------------------------------------------------------------------------------------------
    def array(self, name: str) -> np.ndarray:
        """Read-only view of a tensor (raw storage dtype; BF16 as uint16). Reads pages lazily.

        Large tensors get a memory map of their own, unmapped when the array is dropped: a shared map of the whole
        file would keep every page a check or conversion touched resident until the file is closed (GBs on a 70B
        checkpoint). Small tensors share one map of the file, so 100k of them cost no mmap call each."""
        e = self.entries[name]
        if e.nbytes == 0:
            return np.zeros(e.shape, dtype=dtypes.STORAGE[e.dtype])
        if e.nbytes >= OWN_MAP_BYTES:
            return np.memmap(self.path, dtype=dtypes.STORAGE[e.dtype], mode="r", offset=self.data_offset + e.begin, shape=e.shape)
        if self._mmap is None:
            self._mmap = np.memmap(self.path, dtype=np.uint8, mode="r")
            self._bytes = self._mmap.view(np.ndarray)  # plain views of it skip memmap's per-slice bookkeeping
        raw = self._bytes[self.data_offset + e.begin: self.data_offset + e.end]
        return raw.view(dtypes.STORAGE[e.dtype]).reshape(e.shape)

    def close(self) -> None:
        if self._mmap is not None:
            mm = getattr(self._mmap, "_mmap", None)
            self._mmap = self._bytes = None
            if mm is not None:
                try:
                    mm.close()
                except (BufferError, ValueError):
                    pass  # a view is still alive; the OS unmaps it when the view goes
