"""The per-module engine of `awqfmt convert`: read SRC tensors, convert one module, write shards (in this process
or in worker processes).

Every module goes through the one logical form of `awqfmt.logical` (decode from the source spec, encode into the
target spec: 2 x N functions, not N^2 converters). The packed codes, the only large tensor, take the word-level
path of `awqfmt.repack` between two packed layouts (byte-identical to the logical route, which
`Options.route="logical"` forces); zero points, scales, g_idx and bias always go through decode/encode. Nothing
goes through floating point except the dense targets (fp16 / bf16), which dequantize.

Memory: SRC is read with pread into per-module buffers, never memory-mapped (mapped pages count as resident),
so peak memory is about one module's packed input and output.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import dtypes
from .check import CheckResult, check_checkpoint
from .checkpoint import Checkpoint
from .logical import DecodeError, LogicalModule, RepresentationError, decode, encode
from .modules import QuantModule, fit_modules, group_modules
from .repack import FieldWrapError, repack_tensor
from .spec import LayoutSpec, get_spec, layout_names
from .writer import ShardPlan, ShardWriter, TensorPlan, WriteError

DENSE_TARGETS = {"fp16": "F16", "float16": "F16", "bf16": "BF16", "bfloat16": "BF16"}
DENSE_TORCH_DTYPE = {"F16": "float16", "BF16": "bfloat16"}
DENSE_NAMES = {"F16": "fp16", "BF16": "bf16"}
DEQUANT_CHUNK = 1 << 22  # elements of the [K, N] weight dequantized at a time (dense targets)
COPY_CHUNK = 64 << 20


class ConvertUsageError(ValueError):
    """The command line is wrong (unknown layout, bad option value, no such SRC): exit status 2."""


class ModuleFailure(Exception):
    """A module could not be converted while writing (picklable: crosses process boundaries)."""

    def __init__(self, module: str, code: str, message: str, tensor: str | None = None):
        super().__init__(module, code, message, tensor)
        self.module, self.code, self.message, self.tensor = module, code, message, tensor


# ---- targets and options -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str  # a spec name, or fp16 / bf16
    spec: LayoutSpec | None
    dense_dtype: str | None = None

    @property
    def dense(self) -> bool:
        return self.spec is None


def resolve_target(name: str) -> Target:
    key = name.strip().lower()
    if key in DENSE_TARGETS:
        dtype = DENSE_TARGETS[key]
        return Target(DENSE_NAMES[dtype], None, dtype)
    try:
        spec = get_spec(key)
    except KeyError:
        raise ConvertUsageError(f"unknown layout {name!r}: choose one of {', '.join(layout_names())}, fp16, bf16 "
                                "(aliases: awq-order, logical-order, gptq-v1, ct)") from None
    return Target(spec.name, spec)


@dataclass(frozen=True)
class Options:
    """What every module conversion needs besides its tensors (picklable, sent to worker processes)."""
    target: str
    scale_dtype: str | None
    v1_all_ones: str | None
    symmetric: bool
    route: str = "fast"  # "fast": word-level repack of the codes where it applies; "logical": decode/encode only


# ---- reading SRC without memory-mapping it (mapped pages would count against the process' memory) ----------

@dataclass(frozen=True)
class SrcTensor:
    name: str
    path: str
    offset: int  # absolute, in the file
    nbytes: int
    dtype: str
    shape: tuple[int, ...]


def src_tensor(ckpt: Checkpoint, name: str) -> SrcTensor:
    f = ckpt.files[ckpt.file_of(name)]
    e = f.entries[name]
    return SrcTensor(name, str(f.path), f.data_offset + e.begin, e.nbytes, e.dtype, e.shape)


def check_and_close(ckpt: Checkpoint) -> CheckResult:
    """`awqfmt check` on an open checkpoint, then release its maps."""
    try:
        return check_checkpoint(ckpt)
    finally:
        ckpt.close()


class Reader:
    """pread into fresh arrays: memory is freed with the array, and the page cache is the kernel's business."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def _fd(self, path: str) -> int:
        if path not in self._fds:
            self._fds[path] = os.open(path, os.O_RDONLY)
        return self._fds[path]

    def _fill(self, t: SrcTensor, buf: memoryview, offset: int) -> None:
        fd, done = self._fd(t.path), 0
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], offset + done)
            if n <= 0:
                raise DecodeError("file.truncated", f"{Path(t.path).name} ended while reading {t.name}", t.name)
            done += n

    def read(self, t: SrcTensor) -> np.ndarray:
        buf = np.empty(t.nbytes, dtype=np.uint8)
        if t.nbytes:
            self._fill(t, memoryview(buf), t.offset)
        return buf.view(dtypes.STORAGE[t.dtype]).reshape(t.shape)

    def chunks(self, t: SrcTensor, size: int = COPY_CHUNK) -> Iterator[np.ndarray]:
        buf = np.empty(min(size, max(t.nbytes, 1)), dtype=np.uint8)
        for start in range(0, t.nbytes, size):
            n = min(size, t.nbytes - start)
            self._fill(t, memoryview(buf)[:n], t.offset + start)
            yield buf[:n]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


# ---- one module ---------------------------------------------------------------------------------------------

@dataclass
class ModuleJob:
    prefix: str
    src_layout: str
    bits: int
    group_size: int
    tensors: dict[str, SrcTensor]  # source short name -> location
    outputs: list[TensorPlan] = field(default_factory=list)


@dataclass
class CopyJob:
    src: SrcTensor
    output: TensorPlan


def module_jobs(ckpt: Checkpoint) -> tuple[dict[str, QuantModule], list[str]]:
    modules, unquantized = group_modules(ckpt)
    fit_modules(ckpt, modules)
    return modules, unquantized


def decode_small(job: ModuleJob, read: Callable[[SrcTensor], np.ndarray], v1_all_ones: str | None,
                  with_codes: bool = False) -> tuple[LayoutSpec, LogicalModule]:
    """Decode a module's zeros, scales, g_idx and bias (and its codes when asked) into the logical form."""
    spec = get_spec(job.src_layout)
    codes_name = spec.tensor("codes").name
    arrays = {}
    for short, t in job.tensors.items():
        if short == codes_name and not with_codes:  # shape only: zero bytes, never read
            arrays[short] = np.broadcast_to(np.zeros((), dtype=dtypes.STORAGE[t.dtype]), t.shape)
        else:
            arrays[short] = read(t)
    names = {short: t.dtype for short, t in job.tensors.items()}
    try:
        module = decode(spec, arrays, names, job.bits, job.group_size, v1_all_ones=v1_all_ones or "kernel", with_codes=with_codes)
    except DecodeError as exc:
        full = job.tensors[exc.tensor].name if exc.tensor in job.tensors else exc.tensor
        raise ModuleFailure(job.prefix, exc.code, str(exc), full) from None
    return spec, module


def with_scale_dtype(module: LogicalModule, scale_dtype: str | None) -> int:
    """Store the scales as `scale_dtype`; returns how many scales that would change (0: the change is exact)."""
    if scale_dtype is None or scale_dtype == module.scale_dtype:
        return 0
    wide = dtypes.to_float32(module.scales, module.scale_dtype)
    narrow = dtypes.from_float32(wide, scale_dtype)
    back = dtypes.to_float32(narrow, scale_dtype)
    changed = int(np.count_nonzero(back.view(np.uint32) != wide.view(np.uint32)))
    module.scales, module.scale_dtype = np.ascontiguousarray(narrow), scale_dtype
    return changed


def _codes_for(job: ModuleJob, read, src_spec: LayoutSpec, dst_spec: LayoutSpec, module: LogicalModule, opts: Options):
    """The target's codes tensor: word-level repack between two packed layouts, else through logical codes
    (the unpacked layout has no words to move: its dtype and value range are checked by decode/encode)."""
    sct, dct = src_spec.tensor("codes"), dst_spec.tensor("codes")
    if opts.route == "fast" and dct.packed_dim is not None and sct.packed_dim is not None:
        stored = read(job.tensors[sct.name])
        length = {"K": module.K, "N": module.N}[sct.dims[sct.packed_dim]]
        return repack_tensor(stored, src_spec, sct.name, dst_spec, dct.name, job.bits, length=length), "I32"
    _, full = decode_small(job, read, opts.v1_all_ones, with_codes=True)
    return encode(dst_spec, full)[dct.name]


def convert_module(job: ModuleJob, read: Callable[[SrcTensor], np.ndarray], opts: Options) -> dict[str, tuple[np.ndarray, str]]:
    """One module of SRC -> {output tensor name: (array, dtype)} in the target layout."""
    target = resolve_target(opts.target)
    if target.dense:
        _, full = decode_small(job, read, opts.v1_all_ones, with_codes=True)
        out = {f"{job.prefix}.weight": (dequantize_nk(full, target.dense_dtype), target.dense_dtype)}
        if "bias" in full.extras:
            out[f"{job.prefix}.bias"] = full.extras["bias"]
        return out
    src_spec, module = decode_small(job, read, opts.v1_all_ones)
    module.symmetric = opts.symmetric
    with_scale_dtype(module, opts.scale_dtype)
    try:
        small = encode(target.spec, module)
        small[target.spec.tensor("codes").name] = _codes_for(job, read, src_spec, target.spec, module, opts)
    except (RepresentationError, FieldWrapError) as exc:  # preflight refuses these first: reaching here is a bug
        raise ModuleFailure(job.prefix, getattr(exc, "code", "convert.zero-unrepresentable"), str(exc)) from None
    return {f"{job.prefix}.{short}": arr for short, arr in small.items()}


def _round_f64(values: np.ndarray, dtype: str) -> np.ndarray:
    """Round float64 once to F16 / BF16 (BF16 via round-to-odd float32, so rounding twice cannot differ)."""
    if dtype == "F16":
        return values.astype(np.float16)
    f32 = values.astype(np.float32)
    inexact = f32.astype(np.float64) != values
    if np.any(inexact):
        toward_zero = np.where(np.abs(f32.astype(np.float64)) > np.abs(values), np.nextafter(f32, np.float32(0)), f32)
        bits = toward_zero.view(np.uint32) | np.where(inexact, np.uint32(1), np.uint32(0))
        f32 = bits.view(np.float32)
    return dtypes.from_float32(f32, dtype)


def dequantize_nk(module: LogicalModule, dtype: str) -> np.ndarray:
    """Dense weight [N, K] in `dtype` (F16 / BF16), rounded once from the exact (q - z) * s.

    With F16 or BF16 scales the float32 product is exact (an integer below 2^9 times an 11- or 8-bit mantissa),
    so this equals AutoAWQ's fp16 `(q - z) * s` bit for bit and AutoGPTQ's fp32 result rounded to `dtype`.
    F32 scales are multiplied in float64 (exact) and rounded once."""
    K, N = module.K, module.N
    out = np.empty((N, K), dtype=dtypes.STORAGE[dtype])
    g_idx = module.effective_g_idx()
    exact32 = module.scale_dtype in ("F16", "BF16")
    work = np.float32 if exact32 else np.float64
    scales = dtypes.to_float32(module.scales, module.scale_dtype).astype(work)
    zeros = module.zeros.astype(work)
    step = max(1, DEQUANT_CHUNK // max(1, N))
    for k0 in range(0, K, step):
        k1 = min(K, k0 + step)
        g = g_idx[k0:k1]
        w = (module.codes[k0:k1].astype(work) - zeros[g]) * scales[g]
        out[:, k0:k1] = (dtypes.from_float32(w, dtype) if exact32 else _round_f64(w, dtype)).T
    return out


# ---- writing shards (in this process or in workers) ---------------------------------------------------------

@dataclass
class ShardJob:
    path: str
    plan: ShardPlan
    metadata: dict[str, str] | None
    items: list
    options: Options


class _WriteBehind:
    """Runs a shard's writes in a thread, in submission order, while the next module converts: file writes and
    pread release the GIL, so the I/O overlaps the repack. At most one module's outputs wait in the queue, which
    bounds the extra memory to one module. The first failure is re-raised in the caller's thread."""

    def __init__(self) -> None:
        self._tasks: queue.Queue = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="awqfmt-write-behind", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        reader = Reader()
        try:
            while (task := self._tasks.get()) is not None:
                if self._error is None:
                    try:
                        task(reader)
                    except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
                        self._error = exc
        finally:
            reader.close()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, task: Callable[[Reader], None]) -> None:
        self._raise()
        self._tasks.put(task)

    def finish(self) -> None:
        """Wait for every submitted write; raise the first failure."""
        self._tasks.put(None)
        self._thread.join()
        self._raise()

    def cancel(self) -> None:
        """Drop what has not started and wait for the running write (the caller is failing anyway)."""
        while True:
            try:
                self._tasks.get_nowait()
            except queue.Empty:
                pass
            try:
                self._tasks.put_nowait(None)
                break
            except queue.Full:
                continue
        self._thread.join()


def write_shard(job: ShardJob, on_bytes: Callable[[int], None] | None = None) -> None:
    reader = Reader()
    writer = ShardWriter(Path(job.path), job.plan, job.metadata, on_bytes)
    behind = _WriteBehind()
    try:
        for item in job.items:
            if isinstance(item, CopyJob):
                behind.submit(lambda r, item=item: writer.write_chunks(item.output.name, r.chunks(item.src)))
                continue
            tensors = convert_module(item, reader.read, job.options)
            ordered = [(t.name, *tensors.pop(t.name)) for t in item.outputs]
            del tensors
            behind.submit(lambda r, ordered=ordered: [writer.write(name, arr, dtype) for name, arr, dtype in ordered])
            del ordered
        behind.finish()
        writer.close()
    except BaseException:
        behind.cancel()
        writer.abort()
        raise
    finally:
        reader.close()


_progress_queue = None


def _worker_init(q) -> None:
    global _progress_queue
    _progress_queue = q
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and terminates the pool


def _worker_write(job: ShardJob):
    """Runs in a worker process; returns None or a picklable description of the failure."""
    try:
        write_shard(job, lambda n: _progress_queue.put(n))
        return None
    except ModuleFailure as exc:
        return ("module", exc.args)
    except WriteError as exc:
        return ("write", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported by the parent as an internal error
        return ("internal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def run_jobs(jobs: list[ShardJob], n_proc: int, tick: Callable[[int], None]) -> None:
    if n_proc <= 1 or len(jobs) <= 1:
        for job in jobs:
            write_shard(job, tick)
        return
    ctx = multiprocessing.get_context("spawn")  # never fork a process that may run a progress-bar thread
    q = ctx.Queue()
    pool = ctx.Pool(min(n_proc, len(jobs)), initializer=_worker_init, initargs=(q,))
    try:
        pending = [pool.apply_async(_worker_write, (job,)) for job in jobs]
        while pending:
            try:
                while True:
                    tick(q.get(timeout=0.05))
            except queue.Empty:
                pass
            for r in [r for r in pending if r.ready()]:
                pending.remove(r)
                failure = r.get()
                if failure is None:
                    continue
                kind, detail = failure
                if kind == "module":
                    raise ModuleFailure(*detail)
                if kind == "write":
                    raise WriteError(detail)
                raise RuntimeError(f"a worker failed: {detail}")
        try:
            while True:
                tick(q.get_nowait())
        except queue.Empty:
            pass
        pool.close()
    finally:
        pool.terminate()
        pool.join()
