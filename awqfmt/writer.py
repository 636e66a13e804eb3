"""Write a Hugging Face style checkpoint directory without ever leaving a half-written one.

Three pieces, used by `awqfmt convert`:

- `plan_shards`: every output tensor's name, dtype and shape is known before a byte is written (the layout specs
  give the shapes), so shards and their headers are planned up front, the way `save_pretrained` splits a state
  dict (`--max-shard-size`, a group of tensors never split across shards, one file without index when it fits).
- `ShardWriter`: writes one .safetensors file from its plan: the header first, then each tensor's bytes in plan
  order, refusing a tensor whose name, dtype or size differs from the plan; fsync on close.
- `Staging`: the output goes into `.<dst name>.awqfmt-partial-<pid>` beside DST, guarded by a lock file, and is
  renamed to DST only when complete. An exception, Ctrl-C or a full disk removes the partial directory; a
  SIGKILL leaves it behind, clearly named, and the next conversion into the same DST removes it. A second
  conversion into the same DST while one runs is refused.

All writes go through `open_output`, so tests can inject faults (a file object that raises ENOSPC after N bytes).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from . import dtypes

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PARTIAL_TAG = ".awqfmt-partial-"
OLD_TAG = ".awqfmt-old-"
LOCK_TAG = ".awqfmt-lock"
MARKER = ".awqfmt-partial"  # inside a staging directory: proves it is ours before anything removes it
WRITE_CHUNK = 64 << 20


def open_output(path: Path):
    """Every output file is opened here (tests replace it to inject write faults)."""
    return open(path, "wb")


class WriteError(Exception):
    """The output could not be written (disk full, permission, ...); nothing was left at DST."""


class BusyError(Exception):
    """Another conversion is writing the same DST."""


# ---- planning ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorPlan:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = dtypes.itemsize(self.dtype)
        for d in self.shape:
            n *= d
        return n


@dataclass
class ShardPlan:
    file_name: str
    tensors: list[TensorPlan] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def parse_size(text: str | int) -> int:
    """'5GB' -> 5 * 10**9 (decimal units, as transformers reads --max-shard-size), '500MiB' -> 500 * 2**20."""
    if isinstance(text, int):
        if text <= 0:
            raise ValueError("size must be positive")
        return text
    s = text.strip().upper().replace(" ", "")
    units = {"TIB": 1 << 40, "GIB": 1 << 30, "MIB": 1 << 20, "KIB": 1 << 10,
             "TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    for unit, mult in units.items():
        if s.endswith(unit):
            number = s[: -len(unit)]
            break
    else:
        number, mult = s, 1
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a size: {text!r} (use e.g. 5GB, 500MB, 2GiB or a number of bytes)") from None
    if not value > 0 or value * mult < 1:
        raise ValueError(f"size must be positive, not {text!r}")
    return int(value * mult)


def plan_shards(groups: Iterable[list[TensorPlan]], max_shard_size: int) -> list[ShardPlan]:
    """Fill shards in order; a group (one module's tensors) is never split, and one larger than the limit gets a
    shard of its own. File names follow transformers: model.safetensors, or model-0000i-of-0000n.safetensors."""
    shards: list[list[TensorPlan]] = [[]]
    size = 0
    for group in groups:
        g = sum(t.nbytes for t in group)
        if shards[-1] and size + g > max_shard_size:
            shards.append([])
            size = 0
        shards[-1].extend(group)
        size += g
    if len(shards) == 1:
        return [ShardPlan(SINGLE_NAME, shards[0])]
    n = len(shards)
    return [ShardPlan(f"model-{i + 1:05d}-of-{n:05d}.safetensors", s) for i, s in enumerate(shards)]


def header_bytes(tensors: list[TensorPlan], metadata: dict[str, str] | None) -> bytes:
    """The 8-byte length + JSON header, padded with spaces to a multiple of 8 (as the safetensors library does),
    with contiguous data offsets in plan order."""
    header: dict = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for t in tensors:
        header[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def index_json(shards: list[ShardPlan]) -> str:
    weight_map = {t.name: s.file_name for s in shards for t in s.tensors}
    total = sum(s.nbytes for s in shards)
    return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n"


# ---- writing -------------------------------------------------------------------------------------------------

def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise_write_error(exc: OSError, path: Path) -> None:
    if exc.errno == errno.ENOSPC:
        raise WriteError(f"disk full while writing {path.name}: {exc.strerror or exc}") from exc
    raise WriteError(f"cannot write {path.name}: {exc.strerror or exc}") from exc


class ShardWriter:
    """Stream one planned shard: `write(name, array)` in plan order, then `close()`."""

    def __init__(self, path: Path, plan: ShardPlan, metadata: dict[str, str] | None,
                 on_bytes: Callable[[int], None] | None = None):
        self.path = path
        self.plan = plan
        self._next = 0
        self._on_bytes = on_bytes
        try:
            self._fh = open_output(path)
            self._fh.write(header_bytes(plan.tensors, metadata))
        except OSError as exc:
            _raise_write_error(exc, path)

    def _expect(self, name: str) -> TensorPlan:
        if self._next >= len(self.plan.tensors):
            raise AssertionError(f"{self.path.name}: {name} was not planned for this shard")
        t = self.plan.tensors[self._next]
        if t.name != name:
            raise AssertionError(f"{self.path.name}: expected {t.name}, got {name}")
        self._next += 1
        return t

    def _emit(self, buf) -> None:
        mv = memoryview(buf).cast("B")
        try:
            for start in range(0, len(mv), WRITE_CHUNK):
                part = mv[start:start + WRITE_CHUNK]
                self._fh.write(part)
                if self._on_bytes:
                    self._on_bytes(len(part))
        except OSError as exc:
            _raise_write_error(exc, self.path)

    def write(self, name: str, array: np.ndarray, dtype: str) -> None:
        t = self._expect(name)
        a = np.ascontiguousarray(array)
        if dtype != t.dtype or tuple(a.shape) != t.shape or a.nbytes != t.nbytes or a.dtype.itemsize != dtypes.itemsize(t.dtype):
            raise AssertionError(f"{name}: got {dtype} {list(a.shape)}, planned {t.dtype} {list(t.shape)}")
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        self._emit(a)

    def write_chunks(self, name: str, chunks: Iterable) -> None:
        """A tensor copied as raw bytes (unquantized tensors: never more than one chunk in memory)."""
        t = self._expect(name)
        n = 0
        for c in chunks:
            n += memoryview(c).nbytes
            self._emit(c)
        if n != t.nbytes:
            raise AssertionError(f"{name}: wrote {n} bytes, planned {t.nbytes}")

    def close(self) -> None:
        if self._next != len(self.plan.tensors):
            raise AssertionError(f"{self.path.name}: {len(self.plan.tensors) - self._next} planned tensors not written")
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
        except OSError as exc:
            _raise_write_error(exc, self.path)

    def abort(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass


def write_text(path: Path, text: str) -> None:
    try:
        with open_output(path) as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        _raise_write_error(exc, path)


def copy_file(src: Path, dst: Path) -> None:
    """Copy a non-weight file by content (symlinks followed: the Hugging Face cache links files to blobs)."""
    try:
        with open(src, "rb") as fi, open_output(dst) as fo:
            while True:
                buf = fi.read(WRITE_CHUNK)
                if not buf:
                    break
                fo.write(buf)
            fo.flush()
            os.fsync(fo.fileno())
        shutil.copymode(src, dst)
    except OSError as exc:
        _raise_write_error(exc, dst)


# ---- staging and the atomic commit --------------------------------------------------------------------------

def looks_like_checkpoint(path: Path) -> bool:
    """Empty, or holding a config.json or safetensors files: a directory --overwrite may replace."""
    names = {p.name for p in path.iterdir()}
    return not names or "config.json" in names or any(n.endswith(".safetensors") or n.endswith(".index.json") for n in names)


class Staging:
    """`with Staging(dst, overwrite) as s:` write into `s.path`, then `s.commit()`. Leaving the block without
    commit (an exception, Ctrl-C) removes everything written; only a commit creates DST."""

    def __init__(self, dst: Path, overwrite: bool = False):
        self.dst = Path(os.path.abspath(dst))
        self.overwrite = overwrite
        self.parent = self.dst.parent
        self.path = self.parent / f".{self.dst.name}{PARTIAL_TAG}{os.getpid()}"
        self.lock_path = self.parent / f".{self.dst.name}{LOCK_TAG}"
        self.removed_stale: list[str] = []
        self._lock_fd: int | None = None
        self._committed = False

    def __enter__(self) -> "Staging":
        self._lock_fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise BusyError(f"another awqfmt conversion is writing {self.dst} right now (lock {self.lock_path.name} is held)")
        try:
            self._remove_stale()
            self.path.mkdir()
            (self.path / MARKER).write_text("awqfmt convert staging directory; safe to delete\n")
        except BaseException:
            self._release()
            raise
        return self

    def _remove_stale(self) -> None:
        """We hold the lock, so any partial or old directory for this DST belongs to a dead conversion."""
        for tag in (PARTIAL_TAG, OLD_TAG):
            for p in self.parent.glob(f".{self.dst.name}{tag}*"):
                if p.is_dir() and not p.is_symlink() and (p / MARKER).is_file():
                    shutil.rmtree(p, ignore_errors=True)
                    self.removed_stale.append(p.name)

    def commit(self) -> None:
        """fsync the staged files, then rename into place (moving an old DST aside first when overwriting)."""
        (self.path / MARKER).unlink()
        for p in self.path.rglob("*"):
            if p.is_file():
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        _fsync_dir(self.path)
        old = None
        if self.dst.exists() or self.dst.is_symlink():
            if not self.overwrite or not self.dst.is_dir() or self.dst.is_symlink():
                raise FileExistsError(f"{self.dst} appeared while converting; not replacing it")
            old = self.parent / f".{self.dst.name}{OLD_TAG}{os.getpid()}"
            (self.dst / MARKER).touch()  # the old copy is ours to delete now, even if we die before we do
            os.rename(self.dst, old)
        try:
            os.rename(self.path, self.dst)
        except OSError:
            if old is not None:
                os.rename(old, self.dst)
                (self.dst / MARKER).unlink(missing_ok=True)
            raise
        self._committed = True
        _fsync_dir(self.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _release(self) -> None:
        if self._lock_fd is not None:
            try:
                self.lock_path.unlink(missing_ok=True)
            except OSError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if not self._committed:
                shutil.rmtree(self.path, ignore_errors=True)
        finally:
            self._release()
