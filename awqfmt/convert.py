"""`awqfmt convert`: lossless, streaming conversion of a quantized checkpoint into another layout.

Every module goes through the one logical form of `awqfmt.logical` (decode from the source spec, encode into the
target spec: 2 x N functions, not N^2 converters). The packed codes, the only large tensor, take the word-level
path of `awqfmt.repack` when the target packs them (byte-identical to the logical route, which `route="logical"`
forces); zero points, scales, g_idx and bias always go through decode/encode. Nothing goes through floating
point except the dense targets (fp16 / bf16), which dequantize.

The conversion runs in three phases:
1. preflight: check SRC with the `awqfmt check` rules, decode every module's small tensors (zeros, scales, g_idx)
   and collect every refusal (what the target cannot hold exactly) before a byte is written; plan every output
   tensor and the shards;
2. write: one module at a time into a staging directory beside DST (awqfmt.writer), shards spread over
   processes with `jobs`; peak memory is about one module's packed input and output;
3. check the staged output with the `awqfmt check` rules (and, with `verify`, compare it module by module with
   SRC), then rename it to DST. Any failure leaves no DST.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import shutil
import signal
import time
import traceback
from collections import Counter
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import dtypes
from .check import CheckResult, check_checkpoint
from .checkpoint import PICKLE_SUFFIXES, Checkpoint, CheckpointNotFound, open_checkpoint
from .findings import Finding, Severity, error, info, sort_findings, warning
from .logical import DecodeError, LogicalModule, RepresentationError, decode, encode
from .modules import QuantModule, choose_layout, fit_module, group_modules
from .quant_config import CONFIG_FILES
from .repack import FieldWrapError, repack_tensor
from .spec import LayoutSpec, SpecError, evaluate, get_spec, layout_names
from .writer import (INDEX_NAME, BusyError, ShardPlan, ShardWriter, Staging, TensorPlan, WriteError, copy_file,
                     index_json, looks_like_checkpoint, parse_size, plan_shards, write_text)

DEFAULT_MAX_SHARD_SIZE = "5GB"
DENSE_TARGETS = {"fp16": "F16", "float16": "F16", "bf16": "BF16", "bfloat16": "BF16"}
DENSE_TORCH_DTYPE = {"F16": "float16", "BF16": "bfloat16"}
DENSE_NAMES = {"F16": "fp16", "BF16": "bf16"}
SCALE_DTYPES = {"f16": "F16", "fp16": "F16", "float16": "F16", "bf16": "BF16", "bfloat16": "BF16",
                "f32": "F32", "fp32": "F32", "float32": "F32"}
V1_READINGS = ("kernel", "mask")
# SRC check errors that a conversion option decides instead of carrying them over
RESOLVED_BY_V1_OPTION = frozenset({"zeros.v1-packer-corruption"})
DEQUANT_CHUNK = 1 << 22  # elements of the [K, N] weight dequantized at a time (dense targets)
COPY_CHUNK = 64 << 20


class ConvertUsageError(ValueError):
    """The command line is wrong (unknown layout, bad option value, no such SRC): exit status 2."""


class ConvertRefused(Exception):
    """The conversion was refused or failed; nothing was written at DST. `findings` say why: exit status 1."""

    def __init__(self, findings: list[Finding], src: str = "", dst: str = "", layout_from: str | None = None,
                 layout_to: str = ""):
        super().__init__("; ".join(f"{f.code}: {f.message}" for f in findings[:3]))
        self.findings = sort_findings(findings)
        self.src, self.dst, self.layout_from, self.layout_to = src, dst, layout_from, layout_to

    def to_json(self) -> dict:
        return {"src": self.src, "dst": self.dst, "layout": {"from": self.layout_from, "to": self.layout_to},
                "refused": True, "findings": [f.to_json() for f in self.findings],
                "summary": {"errors": sum(f.severity is Severity.ERROR for f in self.findings)}}


class _ModuleFailure(Exception):
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


def _scale_dtype(name: str | None) -> str | None:
    if name is None:
        return None
    key = name.strip().lower()
    if key.upper() in ("F16", "BF16", "F32"):
        return key.upper()
    if key not in SCALE_DTYPES:
        raise ConvertUsageError(f"--scale-dtype must be F16, BF16 or F32, not {name!r}")
    return SCALE_DTYPES[key]


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


def _src_tensor(ckpt: Checkpoint, name: str) -> SrcTensor:
    f = ckpt.files[ckpt.file_of(name)]
    e = f.entries[name]
    return SrcTensor(name, str(f.path), f.data_offset + e.begin, e.nbytes, e.dtype, e.shape)


def _map_tensor(ckpt: Checkpoint, name: str) -> np.ndarray:
    """One tensor through a memory map of its own: unmapped as soon as the array is dropped."""
    f = ckpt.files[ckpt.file_of(name)]
    e = f.entries[name]
    if e.nbytes == 0:
        return np.zeros(e.shape, dtype=dtypes.STORAGE[e.dtype])
    return np.memmap(f.path, dtype=dtypes.STORAGE[e.dtype], mode="r", offset=f.data_offset + e.begin, shape=e.shape)


def _check_with_transient_maps(ckpt: Checkpoint) -> CheckResult:
    """`awqfmt check` on a checkpoint whose tensors are mapped one at a time. The reader keeps one map per file
    open, so every page a check touches (its samples, with the kernel's read-around) stays resident until the
    file is closed: on a 3.5 GB checkpoint that is 3.5 GB of RSS. Per-tensor maps go with check's per-module arrays."""
    ckpt.array = lambda name: _map_tensor(ckpt, name)  # type: ignore[method-assign]
    try:
        return check_checkpoint(ckpt)
    finally:
        del ckpt.array
        ckpt.close()


class _Reader:
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


def _decode_small(job: ModuleJob, read: Callable[[SrcTensor], np.ndarray], v1_all_ones: str | None,
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
        raise _ModuleFailure(job.prefix, exc.code, str(exc), full) from None
    return spec, module


def _with_scale_dtype(module: LogicalModule, scale_dtype: str | None) -> int:
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
    _, full = _decode_small(job, read, opts.v1_all_ones, with_codes=True)
    return encode(dst_spec, full)[dct.name]


def convert_module(job: ModuleJob, read: Callable[[SrcTensor], np.ndarray], opts: Options) -> dict[str, tuple[np.ndarray, str]]:
    """One module of SRC -> {output tensor name: (array, dtype)} in the target layout."""
    target = resolve_target(opts.target)
    if target.dense:
        _, full = _decode_small(job, read, opts.v1_all_ones, with_codes=True)
        out = {f"{job.prefix}.weight": (dequantize_nk(full, target.dense_dtype), target.dense_dtype)}
        if "bias" in full.extras:
            out[f"{job.prefix}.bias"] = full.extras["bias"]
        return out
    src_spec, module = _decode_small(job, read, opts.v1_all_ones)
    module.symmetric = opts.symmetric
    _with_scale_dtype(module, opts.scale_dtype)
    try:
        small = encode(target.spec, module)
        small[target.spec.tensor("codes").name] = _codes_for(job, read, src_spec, target.spec, module, opts)
    except (RepresentationError, FieldWrapError) as exc:  # preflight refuses these first: reaching here is a bug
        raise _ModuleFailure(job.prefix, getattr(exc, "code", "convert.zero-unrepresentable"), str(exc)) from None
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


def write_shard(job: ShardJob, on_bytes: Callable[[int], None] | None = None) -> None:
    reader = _Reader()
    writer = ShardWriter(Path(job.path), job.plan, job.metadata, on_bytes)
    try:
        for item in job.items:
            if isinstance(item, CopyJob):
                writer.write_chunks(item.output.name, reader.chunks(item.src))
                continue
            tensors = convert_module(item, reader.read, job.options)
            for t in item.outputs:
                arr, dtype = tensors.pop(t.name)
                writer.write(t.name, arr, dtype)
            del tensors
        writer.close()
    except BaseException:
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
    except _ModuleFailure as exc:
        return ("module", exc.args)
    except WriteError as exc:
        return ("write", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported by the parent as an internal error
        return ("internal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def _run_jobs(jobs: list[ShardJob], n_proc: int, tick: Callable[[int], None]) -> None:
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
                    raise _ModuleFailure(*detail)
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


# ---- preflight ----------------------------------------------------------------------------------------------

@dataclass
class _Facts:
    """What preflight learns about one module from its small tensors."""
    symmetric: bool
    act_order: bool
    outputs: list[TensorPlan]
    zeros_output: str | None  # the output zeros tensor, dropped when the whole checkpoint is symmetric and the
    # target stores no zeros for symmetric schemes


def _module_jobs(ckpt: Checkpoint) -> tuple[dict[str, QuantModule], list[str]]:
    modules, unquantized = group_modules(ckpt)
    cfg = ckpt.config
    config_layouts = cfg.matching_layouts()
    bits = cfg.get("bits") if isinstance(cfg.get("bits"), int) else None
    group = cfg.get("group_size") if isinstance(cfg.get("group_size"), int) else None
    for m in modules.values():
        fit_module(ckpt, m, bits, group)
        m.chosen = choose_layout(m, config_layouts)
    return modules, unquantized


def _refusal(code: str, message: str, hint: str | None, job: ModuleJob | None = None, role_tensor: str | None = None,
             file: str | None = None, **evidence) -> Finding:
    tensor = job.tensors[role_tensor].name if job and role_tensor in job.tensors else None
    if job and file is None:
        first = next(iter(job.tensors.values()))
        file = Path(first.path).name
    return error(code, message, hint=hint, file=file, module=job.prefix if job else None, tensor=tensor, evidence=evidence)


def _preflight_module(job: ModuleJob, read, target: Target, opts_v1: str | None, scale_dtype: str | None) -> tuple[_Facts | None, list[Finding]]:
    src_spec = get_spec(job.src_layout)
    zeros_name = src_spec.tensor("zeros").name
    codes_name = src_spec.tensor("codes").name
    try:
        _, module = _decode_small(job, read, opts_v1)
    except _ModuleFailure as exc:
        return None, [_refusal(exc.code, exc.message, "the source module cannot be read as its layout; run `awqfmt check`", job, None)]
    refusals = []
    b = job.bits
    if src_spec.zero_offset < 0 and opts_v1 is None:
        n = int(np.count_nonzero(module.zeros == (1 << b)))
        if n:
            refusals.append(_refusal(
                "convert.v1-all-ones",
                f"{n} GPTQ v1 zero field(s) store {(1 << b) - 1:#x} (all ones), whose meaning readers disagree on: zero point {1 << b} "
                "in the CUDA/exllama kernels, 0 in AutoGPTQ's masking torch path (and AutoGPTQ's packer writes it when a zero of 0 "
                "wrapped to -1)",
                "say how to read them: --v1-all-ones kernel (what GPU kernels compute) or --v1-all-ones mask",
                job, zeros_name, count=n))
            return None, refusals  # every other verdict on this module depends on that reading
    symmetric = bool(np.all(module.zeros == (1 << (b - 1))))
    act_order = module.has_act_order()
    if target.dense:
        outputs = [TensorPlan(f"{job.prefix}.weight", target.dense_dtype, (module.N, module.K))]
        if "bias" in module.extras:
            arr, dt = module.extras["bias"]
            outputs.append(TensorPlan(f"{job.prefix}.bias", dt, tuple(arr.shape)))
        return _Facts(symmetric, act_order, outputs, None), refusals
    spec = target.spec
    if b not in spec.bits:
        refusals.append(_refusal("convert.bits-unsupported", f"{b}-bit module: layout {spec.name} has no {b}-bit packing "
                                 f"(it packs {', '.join(map(str, spec.bits))} bits)",
                                 "choose a layout with this width: " + ", ".join(s for s in layout_names() if b in get_spec(s).bits),
                                 job, codes_name, bits=b))
        return None, refusals
    env = spec.dims_env(module.K, module.N, job.group_size, b)
    for inv in spec.invariants:
        if not evaluate(inv.expr, env):
            refusals.append(_refusal("convert.target-shape", f"{inv.message} in layout {spec.name} (K={module.K}, N={module.N}, "
                                     f"group_size={job.group_size}, bits={b}): `{inv.expr}` fails",
                                     "this module's shape cannot be stored in that layout without padding that changes K or N",
                                     job, codes_name, rule=inv.code))
    if spec.zero_offset < 0 and opts_v1 != "kernel":
        n = int(np.count_nonzero(module.zeros == (1 << b)))
        if n:
            refusals.append(_refusal(
                "convert.v1-all-ones", f"{n} zero point(s) equal {1 << b}: GPTQ v1 can store them only as all-ones fields, which "
                "masking readers (AutoGPTQ's torch path) read as 0",
                "convert to a layout that stores the zero point as is, or pass --v1-all-ones kernel to write them the way "
                "GPU kernels read them", job, zeros_name, count=n))
    changed = _with_scale_dtype(module, scale_dtype)
    if changed:
        refusals.append(_refusal("convert.scale-inexact", f"{changed} of {module.scales.size} scales change value when stored as "
                                 f"{scale_dtype}", "keep the scales' dtype (omit --scale-dtype) or widen it (F16/BF16 -> F32 is exact)",
                                 job, src_spec.tensor("scales").name, count=changed))
    module.symmetric = False  # plan the zeros tensor; it is dropped below if the whole checkpoint is symmetric
    try:
        small = encode(spec, module)
    except RepresentationError as exc:
        role = {"convert.act-order": "g_idx", "convert.zero-unrepresentable": "zeros"}.get(exc.code, "codes")
        src_t = src_spec.tensor(role)
        refusals.append(_refusal(exc.code, str(exc), exc.hint, job, src_t.name if src_t else None))
        return None, refusals
    if refusals:
        return None, refusals
    outputs, zeros_output = [], None
    for t in spec.tensors:
        full = f"{job.prefix}.{t.name}"
        if t.role == "codes":
            dtype = "I32" if t.packed_dim is not None else t.dtypes[0]
            outputs.append(TensorPlan(full, dtype, spec.expected_shape(t, module.K, module.N, job.group_size, b)))
        elif t.name in small:
            arr, dtype = small[t.name]
            outputs.append(TensorPlan(full, dtype, tuple(arr.shape)))
            if t.role == "zeros":
                zeros_output = full
    return _Facts(symmetric, act_order, outputs, zeros_output), []


# ---- config and side files ----------------------------------------------------------------------------------

def _render(template, values: dict):
    """A spec's config.write template with "{name}" strings replaced by values (any JSON type)."""
    if isinstance(template, str) and len(template) > 2 and template[0] == "{" and template[-1] == "}":
        key = template[1:-1]
        if key not in values:
            raise SpecError(f"config template names unknown value {template!r}")
        return values[key]
    if isinstance(template, dict):
        return {k: _render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, values) for v in template]
    return template


def _ignore_list(ckpt: Checkpoint, unquantized: list[str]) -> list[str] | None:
    """Linear layers left unquantized. compressed-tensors loaders quantize every Linear not ignored, so an
    unquantized lm_head must be listed (llm-compressor writes ["lm_head"])."""
    given = ckpt.config.get("modules_to_not_convert")
    if given:
        return list(given)
    out = []
    for name in unquantized:
        prefix, _, short = name.rpartition(".")
        lowered = prefix.lower()
        if short == "weight" and len(ckpt.entry(name).shape) == 2 and "embed" not in lowered and "norm" not in lowered \
                and not lowered.endswith(("wte", "wpe")):
            out.append(prefix)
    return out or None


def target_config_files(ckpt: Checkpoint, target: Target, bits: int | None, group_size: int | None, symmetric: bool,
                        act_order: bool, unquantized: list[str]) -> dict[str, dict]:
    """config.json (and the target's side file) for DST: the source's model config, with the quantization_config
    the target's own tools write (rendered from the spec's config.write), or none for dense weights."""
    model_config = deepcopy(ckpt.config.model_config) if isinstance(ckpt.config.model_config, dict) else None
    if target.dense:
        if model_config is None:
            return {}
        model_config.pop("quantization_config", None)
        model_config["torch_dtype"] = DENSE_TORCH_DTYPE[target.dense_dtype]
        return {"config.json": model_config}
    ignore = _ignore_list(ckpt, unquantized)
    values = {
        "bits": bits, "group_size": group_size, "sym": symmetric, "zero_point": not symmetric, "desc_act": act_order,
        "modules_to_not_convert": ignore if target.name == "compressed-tensors" else ckpt.config.get("modules_to_not_convert"),
        "strategy": "group" if group_size and group_size > 0 else "channel",
        "group_size_or_null": group_size if group_size and group_size > 0 else None,
        "actorder": "group" if act_order else None,
    }
    qcfg = _render(target.spec.config["write"], values)
    model_config = model_config or {}
    model_config["quantization_config"] = qcfg
    files = {"config.json": model_config}
    side = target.spec.config.get("side_file")
    if side:
        files[side] = qcfg
    return files


def _side_files(src_dir: Path, src_is_dir: bool) -> tuple[list[Path], list[str]]:
    """Non-weight files to copy (tokenizer, generation config, ...), and what was skipped and why."""
    if not src_is_dir:
        return [], []
    copy, skipped = [], []
    for p in sorted(src_dir.rglob("*")):
        rel = p.relative_to(src_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if p.is_dir():
            if p.is_symlink():
                skipped.append(f"{rel} (a linked directory)")
            continue
        top = len(rel.parts) == 1
        name = p.name
        if top and (name.endswith(".safetensors") or name.endswith(".index.json") or name in CONFIG_FILES):
            continue  # rewritten by the conversion
        if name.endswith(PICKLE_SUFFIXES):
            skipped.append(f"{rel} (pickle: never opened or copied)")
            continue
        if any(q.is_symlink() and q.is_dir() for q in list(p.parents)[: len(rel.parts) - 1]):
            continue
        copy.append(p)
    return copy, skipped


# ---- paths --------------------------------------------------------------------------------------------------

def default_dst(src: Path, target: Target) -> Path:
    base = src if src.is_dir() else src.parent
    base = Path(os.path.abspath(base))
    return base.parent / f"{base.name}-{target.name}"


def _path_refusals(src_dir: Path, src_path: Path, dst: Path, overwrite: bool) -> list[Finding]:
    def refuse(code, message, hint):
        return error(code, message, hint=hint)

    s_dir, s_path = src_dir.resolve(), src_path.resolve()
    d = Path(os.path.abspath(dst))
    d_res = d.resolve()
    if d_res == s_path or d_res == s_dir:
        return [refuse("convert.dst-is-src", f"DST {dst} is SRC", "write the converted checkpoint to a new directory")]
    if d_res.is_relative_to(s_dir):
        return [refuse("convert.dst-inside-src", f"DST {dst} is inside SRC's directory {s_dir}",
                       "SRC is never modified: choose a directory outside it")]
    if s_dir.is_relative_to(d_res):
        return [refuse("convert.src-inside-dst", f"SRC {src_path} is inside DST {dst}",
                       "replacing DST would delete SRC: choose another DST")]
    if d.is_symlink():
        return [refuse("convert.dst-exists", f"DST {dst} is a symbolic link", "give the real directory, or a new path")]
    if d.exists() and not d.is_dir():
        return [refuse("convert.dst-is-file", f"DST {dst} exists and is not a directory", "choose a directory path; awqfmt writes a model directory")]
    if d.is_dir():
        if not overwrite:
            return [refuse("convert.dst-exists", f"DST {dst} already exists", "pass --overwrite to replace it, or choose a new directory")]
        if not looks_like_checkpoint(d):
            return [refuse("convert.dst-not-checkpoint", f"DST {dst} exists and does not look like a model directory (no config.json or "
                           "*.safetensors); --overwrite only replaces checkpoints", "choose a new or empty directory")]
    return []


# ---- the result ---------------------------------------------------------------------------------------------

@dataclass
class ConvertResult:
    src: str
    dst: str
    dst_defaulted: bool
    layout_from: str | None
    layout_to: str
    modules: int
    tensors: int
    shards: int
    bytes: int
    seconds: float
    files_copied: list[str]
    findings: list[Finding]
    verified: bool | None
    check: CheckResult | None = None

    @property
    def errors(self) -> int:
        return sum(f.severity is Severity.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity is Severity.WARNING for f in self.findings)

    def to_json(self) -> dict:
        return {
            "src": self.src, "dst": self.dst, "dst_defaulted": self.dst_defaulted,
            "layout": {"from": self.layout_from, "to": self.layout_to},
            "modules": self.modules, "tensors": self.tensors, "shards": self.shards, "bytes": self.bytes,
            "seconds": round(self.seconds, 3), "files_copied": self.files_copied, "verified": self.verified,
            "findings": [f.to_json() for f in self.findings],
            "summary": {"errors": self.errors, "warnings": self.warnings},
        }


# ---- the conversion -----------------------------------------------------------------------------------------

def convert(
    src: str | Path,
    dst: str | Path | None,
    to: str,
    *,
    max_shard_size: str | int = DEFAULT_MAX_SHARD_SIZE,
    overwrite: bool = False,
    jobs: int = 1,
    verify: bool = False,
    scale_dtype: str | None = None,
    v1_all_ones: str | None = None,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
    route: str = "fast",
) -> ConvertResult:
    """Convert the checkpoint at `src` into layout `to`, writing a new model directory at `dst`
    (default: `<src>-<layout>` beside SRC).

    Raises ConvertUsageError for a bad request and ConvertRefused (with findings) when the data cannot be
    converted exactly, SRC has errors (unless `force`: its data are then carried over bit for bit, defects
    included, and reported), DST is taken, or writing fails. Nothing is ever left at DST by a failure.
    `v1_all_ones` ("kernel" | "mask") says how GPTQ v1 zero fields of all ones are read; `force` never
    overrides that choice nor any refusal to represent data. `route="logical"` skips the word-level repack.
    """
    t0 = time.perf_counter()
    target = resolve_target(to)
    if v1_all_ones is not None and v1_all_ones not in V1_READINGS:
        raise ConvertUsageError(f"--v1-all-ones must be 'kernel' or 'mask', not {v1_all_ones!r}")
    scale_dtype = _scale_dtype(scale_dtype)
    if scale_dtype and target.dense:
        raise ConvertUsageError("--scale-dtype applies to quantized layouts; fp16/bf16 output has no scales")
    try:
        shard_limit = parse_size(max_shard_size)
    except ValueError as exc:
        raise ConvertUsageError(f"--max-shard-size: {exc}") from None
    if jobs < 1:
        raise ConvertUsageError("--jobs must be at least 1")
    if route not in ("fast", "logical"):
        raise ConvertUsageError(f"route must be 'fast' or 'logical', not {route!r}")
    src_path = Path(src)
    try:
        ckpt = open_checkpoint(src_path)
    except CheckpointNotFound as exc:
        raise ConvertUsageError(str(exc)) from None
    defaulted = dst is None
    dst_path = Path(os.path.abspath(default_dst(src_path, target) if dst is None else dst))
    ctx = {"src": str(src_path), "dst": str(dst_path), "layout_to": target.name}
    try:
        path_problems = _path_refusals(ckpt.directory, src_path, dst_path, overwrite)
        if path_problems:
            raise ConvertRefused(path_problems, **ctx)
        plan = _preflight(ckpt, target, scale_dtype, v1_all_ones, force, route)
        ctx["layout_from"] = plan.layout_from
        if plan.refusals:
            raise ConvertRefused(plan.refusals, **ctx)
        result = _write_and_commit(ckpt, src_path, dst_path, overwrite, target, plan, shard_limit, jobs, verify, progress)
    finally:
        ckpt.close()
    result.dst_defaulted = defaulted
    result.seconds = time.perf_counter() - t0
    return result


@dataclass
class _Plan:
    layout_from: str | None
    items: list  # ModuleJob | CopyJob, in output order
    groups: list[list[TensorPlan]]
    options: Options | None
    configs: dict[str, dict]
    unquantized: list[str]
    modules: int
    metadata: dict[str, str] | None
    src_check: CheckResult | None
    notes: list[Finding]
    refusals: list[Finding]


def _preflight(ckpt: Checkpoint, target: Target, scale_dtype, v1_all_ones, force: bool, route: str) -> _Plan:
    notes: list[Finding] = []
    refusals: list[Finding] = []
    src_check = _check_with_transient_maps(ckpt)  # preflight and writing read with pread
    # v1 all-ones fields are decided by --v1-all-ones (a module refusal says so when it is missing), not --force
    blocking = [f for f in src_check.findings if f.severity is Severity.ERROR and f.code not in RESOLVED_BY_V1_OPTION]
    modules, unquantized = _module_jobs(ckpt)
    if not modules:
        refusals.append(error("convert.no-quantized-modules", "SRC has no quantized module (no qweight / weight_packed / "
                              "weight_codes tensors); awqfmt converts between quantized layouts and to dense fp16/bf16",
                              hint="quantizing a dense model is a job for AutoAWQ, GPTQModel or llm-compressor"))
    unreadable = [m for m in modules.values() if m.chosen is None]
    for m in unreadable:
        refusals.append(error("convert.unreadable-module", "the module's tensors fit no layout spec, so it cannot be decoded",
                              hint="run `awqfmt check` on SRC for the details", module=m.prefix,
                              file=ckpt.file_of(next(iter(m.tensors.values())))))
    if blocking and not force:
        refusals += blocking
        refusals.append(error("convert.src-errors", f"`awqfmt check` finds {len(blocking)} error(s) in SRC",
                              hint="fix SRC, or pass --force to convert anyway: the data are carried over bit for bit, defects "
                                   "included, and every refusal to represent data still applies"))
    elif blocking:
        notes.append(warning("convert.forced", f"converted despite {len(blocking)} error(s) that `awqfmt check` finds in SRC "
                             "(--force): they are carried over bit for bit", evidence={"codes": sorted({f.code for f in blocking})}))
    module_of = {full: m.prefix for m in modules.values() for full in m.tensors.values()}
    reader = _Reader()
    facts: dict[str, _Facts] = {}
    jobs_by_prefix: dict[str, ModuleJob] = {}
    try:
        for m in modules.values():
            if m.chosen is None:
                continue
            job = ModuleJob(m.prefix, m.chosen.spec.name, m.chosen.bits, m.chosen.G,
                            {short: _src_tensor(ckpt, full) for short, full in m.tensors.items()})
            f, problems = _preflight_module(job, reader.read, target, v1_all_ones, scale_dtype)
            refusals += problems
            if f is not None:
                facts[m.prefix] = f
                jobs_by_prefix[m.prefix] = job
    finally:
        reader.close()
    chosen = [m.chosen for m in modules.values() if m.chosen]
    layout_from = Counter(c.spec.name for c in chosen).most_common(1)[0][0] if chosen else None
    precisions = Counter((c.bits, c.G) for c in chosen)
    if not target.dense and len(precisions) > 1:
        refusals.append(error("convert.mixed-precision", "modules use different (bits, group_size): " +
                              ", ".join(f"{b}-bit/g{g} x{n}" for (b, g), n in precisions.most_common()),
                              hint=f"a {target.name} config holds one bits and group_size; convert to fp16/bf16, or split the model"))
    if v1_all_ones and any(c.spec.zero_offset < 0 for c in chosen):
        notes.append(info("convert.v1-all-ones-read", f"GPTQ v1 zero fields of all ones read as {v1_all_ones} "
                          f"({'zero point 2^b, as GPU kernels do' if v1_all_ones == 'kernel' else 'zero point 0, as AutoGPTQ masking readers do'})"))
    symmetric = bool(facts) and all(f.symmetric for f in facts.values())
    act_order = any(f.act_order for f in facts.values())
    items, groups, seen = [], [], set()
    names: set[str] = set()
    for full in ckpt.locations:
        prefix = module_of.get(full)
        if prefix is not None:
            if prefix in seen or prefix not in jobs_by_prefix:
                continue
            seen.add(prefix)
            job, f = jobs_by_prefix[prefix], facts[prefix]
            drop_zeros = symmetric and target.spec is not None and target.spec.zeros_when_symmetric == "absent"
            job.outputs = [t for t in f.outputs if not (drop_zeros and t.name == f.zeros_output)]
            items.append(job)
            groups.append(job.outputs)
        else:
            st = _src_tensor(ckpt, full)
            out = TensorPlan(full, st.dtype, st.shape)
            items.append(CopyJob(st, out))
            groups.append([out])
        for t in groups[-1]:
            if t.name in names:
                refusals.append(error("convert.name-clash", f"two output tensors would be named {t.name!r}",
                                      hint="SRC holds both a quantized module and a plain tensor of that name", tensor=t.name))
            names.add(t.name)
    bits = chosen[0].bits if len(precisions) == 1 else None
    group = chosen[0].G if len(precisions) == 1 else None
    configs = target_config_files(ckpt, target, bits, group, symmetric, act_order, unquantized) if chosen else {}
    if not target.dense and not isinstance(ckpt.config.model_config, dict):
        notes.append(warning("convert.no-model-config", "SRC has no config.json: DST's config.json holds only the quantization_config",
                             hint="copy the model's config.json into DST (keeping quantization_config) before loading it"))
    metadata = None
    for f_ in ckpt.files.values():
        if f_.metadata:
            metadata = {**f_.metadata, **(metadata or {})}
    options = Options(target.name, scale_dtype, v1_all_ones, symmetric, route)
    return _Plan(layout_from, items, groups, options, configs, unquantized, len(jobs_by_prefix),
                 metadata if metadata is not None else {"format": "pt"}, src_check, notes, refusals)


def _write_and_commit(ckpt: Checkpoint, src_path: Path, dst: Path, overwrite: bool, target: Target, plan: _Plan,
                      shard_limit: int, jobs: int, verify: bool, progress) -> ConvertResult:
    ctx = {"src": str(src_path), "dst": str(dst), "layout_from": plan.layout_from, "layout_to": target.name}
    shards = plan_shards(plan.groups, shard_limit)
    item_of = {}
    for item in plan.items:
        for t in (item.outputs if isinstance(item, ModuleJob) else [item.output]):
            item_of[t.name] = item
    total = sum(s.nbytes for s in shards)
    side, skipped = _side_files(ckpt.directory, src_path.is_dir() or src_path.name.endswith(".json"))
    parent = dst.parent
    created = [p for p in reversed([parent, *parent.parents]) if not p.exists()]
    try:
        return _write_staged(ckpt, src_path, dst, overwrite, target, plan, shards, item_of, total, side, skipped,
                             jobs, verify, progress, ctx)
    except WriteError as exc:
        raise ConvertRefused([error("convert.write-failed", str(exc), hint="nothing was written at DST; free space or fix permissions and retry")],
                             **ctx) from None
    except BusyError as exc:
        raise ConvertRefused([error("convert.dst-busy", str(exc), hint="wait for the other conversion, or choose another DST")], **ctx) from None
    finally:
        if not dst.exists():
            for p in reversed(created):  # directories made for DST's parent, now empty again
                try:
                    p.rmdir()
                except OSError:
                    break


def _write_staged(ckpt, src_path, dst, overwrite, target, plan, shards, item_of, total, side, skipped, jobs, verify,
                  progress, ctx) -> ConvertResult:
    parent = dst.parent
    side_bytes = sum(p.stat().st_size for p in side)
    parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(parent).free
    need = total + side_bytes
    if free < need:
        raise ConvertRefused([error("convert.disk-space", f"DST needs {need / 1e9:.2f} GB, {free / 1e9:.2f} GB are free on {parent}",
                                    hint="free space, or choose a DST on another disk")], **ctx)
    notes = list(plan.notes)
    with Staging(dst, overwrite) as staging:
        for name in staging.removed_stale:
            notes.append(info("convert.stale-removed", f"removed {name}, left by an interrupted conversion into the same DST"))
        shard_jobs = []
        for s in shards:
            items, seen = [], set()
            for t in s.tensors:
                item = item_of[t.name]
                if id(item) not in seen:
                    seen.add(id(item))
                    items.append(item)
            shard_jobs.append(ShardJob(str(staging.path / s.file_name), s, plan.metadata, items, plan.options))
        done = [0]

        def tick(n: int) -> None:
            done[0] += n
            if progress:
                progress(done[0], total)

        if progress:
            progress(0, total)
        try:
            _run_jobs(shard_jobs, jobs, tick)
        except _ModuleFailure as exc:
            raise ConvertRefused([error(exc.code, exc.message, hint="nothing was written at DST", module=exc.module,
                                        tensor=exc.tensor)], **ctx) from None
        if len(shards) > 1:
            write_text(staging.path / INDEX_NAME, index_json(shards))
        for name, obj in plan.configs.items():
            write_text(staging.path / name, json.dumps(obj, indent=2) + "\n")
        copied = []
        for p in side:
            rel = p.relative_to(ckpt.directory)
            (staging.path / rel).parent.mkdir(parents=True, exist_ok=True)
            copy_file(p, staging.path / rel)
            copied.append(str(rel))
        for s in skipped:
            notes.append(info("convert.file-skipped", f"not copied: {s}"))
        dst_check = _check_with_transient_maps(open_checkpoint(staging.path))
        dst_check.path = str(dst)
        new_errors = _new_errors(plan.src_check, dst_check, target, plan.options.v1_all_ones)
        if new_errors:
            raise ConvertRefused(new_errors + [error("convert.dst-check-failed", "the converted checkpoint fails `awqfmt check` "
                                                      "where SRC did not; nothing was written at DST",
                                                      hint="this is a bug in awqfmt: please report it with SRC's layout")], **ctx)
        verified = None
        if verify:
            mismatches = compare_checkpoints(src_path, staging.path, target, plan.options)
            if mismatches:
                raise ConvertRefused(mismatches, **ctx)
            verified = True
        staging.commit()
    dst_findings = [f for f in dst_check.findings if not (target.dense and f.code == "checkpoint.no-quantized-modules")]
    return ConvertResult(str(src_path), str(dst), False, plan.layout_from, target.name, plan.modules,
                         sum(len(s.tensors) for s in shards), len(shards), total, 0.0, copied,
                         sort_findings(notes + dst_findings), verified, dst_check)


def _new_errors(src_check: CheckResult | None, dst_check: CheckResult, target: Target, v1_all_ones: str | None) -> list[Finding]:
    """DST errors that SRC did not have (same rule, same module): a conversion must not introduce defects.
    All-ones v1 zero fields written on purpose (--v1-all-ones kernel) are the one exception."""
    inherited = {(f.code, f.module) for f in (src_check.findings if src_check else []) if f.severity is Severity.ERROR}
    out = []
    for f in dst_check.findings:
        if f.severity is not Severity.ERROR or (f.code, f.module) in inherited:
            continue
        if v1_all_ones == "kernel" and f.code in RESOLVED_BY_V1_OPTION:
            continue
        if target.dense and f.code == "checkpoint.no-quantized-modules":
            continue
        out.append(f)
    return out


# ---- --verify: SRC and DST compared module by module ----------------------------------------------------------

def compare_checkpoints(src: str | Path, dst: str | Path, target: Target, opts: Options) -> list[Finding]:
    """Decode SRC and DST module by module and compare codes, zeros, scales, g_idx and bias (for dense targets
    the weights against SRC dequantized the same way), plus every unquantized tensor byte for byte.
    Returns an error finding per difference."""
    out: list[Finding] = []
    s_ckpt, d_ckpt = open_checkpoint(src), open_checkpoint(dst)
    reader = _Reader()
    try:
        s_mods, s_plain = _module_jobs(s_ckpt)
        d_mods, _ = _module_jobs(d_ckpt)
        for prefix, sm in s_mods.items():
            if sm.chosen is None:
                continue
            s_job = ModuleJob(prefix, sm.chosen.spec.name, sm.chosen.bits, sm.chosen.G,
                              {k: _src_tensor(s_ckpt, v) for k, v in sm.tensors.items()})
            _, a = _decode_small(s_job, reader.read, opts.v1_all_ones, with_codes=True)
            if target.dense:
                out += _compare_dense(prefix, a, d_ckpt, reader, target)
                continue
            dm = d_mods.get(prefix)
            if dm is None or dm.chosen is None:
                out.append(error("verify.missing-module", "module is in SRC but not readable in DST", module=prefix))
                continue
            d_job = ModuleJob(prefix, dm.chosen.spec.name, dm.chosen.bits, dm.chosen.G,
                              {k: _src_tensor(d_ckpt, v) for k, v in dm.tensors.items()})
            _, b = _decode_small(d_job, reader.read, "kernel", with_codes=True)
            out += _compare_modules(prefix, a, b)
        for name in s_plain:
            if name not in d_ckpt.locations:
                out.append(error("verify.missing-tensor", "unquantized tensor of SRC is missing in DST", tensor=name))
                continue
            x, y = _src_tensor(s_ckpt, name), _src_tensor(d_ckpt, name)
            same = (x.dtype, x.shape) == (y.dtype, y.shape) and all(
                np.array_equal(p, q) for p, q in zip(reader.chunks(x, 8 << 20), _copy_chunks(reader, y, 8 << 20)))
            if not same:
                out.append(error("verify.mismatch", "unquantized tensor differs between SRC and DST", tensor=name))
    finally:
        reader.close()
        s_ckpt.close()
        d_ckpt.close()
    return out


def _copy_chunks(reader: _Reader, t: SrcTensor, size: int) -> Iterator[np.ndarray]:
    for c in reader.chunks(t, size):  # chunks() reuses one buffer: copy so two streams can be compared
        yield c.copy()


def _mismatch(prefix: str, what: str, a: np.ndarray, b: np.ndarray) -> Finding | None:
    if a.shape != b.shape:
        return error("verify.mismatch", f"{what}: shape {list(a.shape)} in SRC, {list(b.shape)} in DST", module=prefix)
    diff = int(np.count_nonzero(a != b))
    if diff:
        return error("verify.mismatch", f"{what} differ at {diff} of {a.size} positions", module=prefix, evidence={"count": diff})
    return None


def _compare_modules(prefix: str, a: LogicalModule, b: LogicalModule) -> list[Finding]:
    found = [
        _mismatch(prefix, "codes", a.codes, b.codes),
        _mismatch(prefix, "zero points", a.zeros, b.zeros),
        _mismatch(prefix, "g_idx", a.effective_g_idx(), b.effective_g_idx()),
    ]
    if a.scale_dtype == b.scale_dtype:
        found.append(_mismatch(prefix, "scales (bits)", a.scales.view(np.uint8), b.scales.view(np.uint8)))
    else:
        found.append(_mismatch(prefix, "scales (values)", dtypes.to_float32(a.scales, a.scale_dtype).view(np.uint32),
                               dtypes.to_float32(b.scales, b.scale_dtype).view(np.uint32)))
    if a.bits != b.bits or a.group_size != b.group_size:
        found.append(error("verify.mismatch", f"bits/group_size {a.bits}/{a.group_size} in SRC, {b.bits}/{b.group_size} in DST", module=prefix))
    if ("bias" in a.extras) != ("bias" in b.extras):
        found.append(error("verify.mismatch", "bias present on one side only", module=prefix))
    elif "bias" in a.extras:
        found.append(_mismatch(prefix, "bias", a.extras["bias"][0].view(np.uint8), b.extras["bias"][0].view(np.uint8)))
    return [f for f in found if f is not None]


def _compare_dense(prefix: str, a: LogicalModule, d_ckpt: Checkpoint, reader: _Reader, target: Target) -> list[Finding]:
    name = f"{prefix}.weight"
    if name not in d_ckpt.locations:
        return [error("verify.missing-tensor", "dense weight missing in DST", module=prefix, tensor=name)]
    got = reader.read(_src_tensor(d_ckpt, name))
    want = dequantize_nk(a, target.dense_dtype)
    f = _mismatch(prefix, f"dequantized weights ({target.dense_dtype})", want.view(np.uint16), got.view(np.uint16))
    return [f] if f else []
