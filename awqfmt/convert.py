"""`awqfmt convert`: lossless, streaming conversion of a quantized checkpoint into another layout.

The conversion runs in three phases:
1. preflight: check SRC with the `awqfmt check` rules, decode every module's small tensors (zeros, scales, g_idx)
   and collect every refusal (what the target cannot hold exactly) before a byte is written; plan every output
   tensor and the shards;
2. write: one module at a time (awqfmt.convert_engine) into a staging directory beside DST (awqfmt.writer), shards
   spread over processes with `jobs`; peak memory is about one module's packed input and output;
3. check the staged output with the `awqfmt check` rules (and, with `verify`, compare it module by module with
   SRC: awqfmt.convert_verify), then rename it to DST. Any failure leaves no DST.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .check import CheckResult
from .checkpoint import Checkpoint, CheckpointNotFound, open_checkpoint
from .convert_config import side_files, target_config_files
from .convert_engine import (ConvertUsageError, CopyJob, ModuleFailure, ModuleJob, Options, Reader, ShardJob, SrcTensor,  # noqa: F401
                             Target, check_and_close, convert_module, decode_small, dequantize_nk, module_jobs,
                             resolve_target, run_jobs, src_tensor, with_scale_dtype)
from .convert_verify import compare_checkpoints
from .findings import Finding, Severity, error, info, sort_findings, warning
from .logical import RepresentationError, encode
from .spec import evaluate, get_spec, layout_names
from .writer import (INDEX_NAME, BusyError, Staging, TensorPlan, WriteError, copy_file, index_json,
                     looks_like_checkpoint, parse_size, plan_shards, write_text)

DEFAULT_MAX_SHARD_SIZE = "5GB"
SCALE_DTYPES = {"f16": "F16", "fp16": "F16", "float16": "F16", "bf16": "BF16", "bfloat16": "BF16",
                "f32": "F32", "fp32": "F32", "float32": "F32"}
V1_READINGS = ("kernel", "mask")
# SRC check errors that a conversion option decides instead of carrying them over
RESOLVED_BY_V1_OPTION = frozenset({"zeros.v1-packer-corruption"})


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


def _scale_dtype(name: str | None) -> str | None:
    if name is None:
        return None
    key = name.strip().lower()
    if key.upper() in ("F16", "BF16", "F32"):
        return key.upper()
    if key not in SCALE_DTYPES:
        raise ConvertUsageError(f"--scale-dtype must be F16, BF16 or F32, not {name!r}")
    return SCALE_DTYPES[key]


# ---- preflight ----------------------------------------------------------------------------------------------

@dataclass
class _Facts:
    """What preflight learns about one module from its small tensors."""
    symmetric: bool
    act_order: bool
    outputs: list[TensorPlan]
    zeros_output: str | None  # the output zeros tensor, dropped when the whole checkpoint is symmetric and the
    # target stores no zeros for symmetric schemes


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
        _, module = decode_small(job, read, opts_v1)
    except ModuleFailure as exc:
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
    changed = with_scale_dtype(module, scale_dtype)
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
    src_check = check_and_close(ckpt)  # preflight and writing read with pread
    # v1 all-ones fields are decided by --v1-all-ones (a module refusal says so when it is missing), not --force
    blocking = [f for f in src_check.findings if f.severity is Severity.ERROR and f.code not in RESOLVED_BY_V1_OPTION]
    modules, unquantized = module_jobs(ckpt)
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
    reader = Reader()
    facts: dict[str, _Facts] = {}
    jobs_by_prefix: dict[str, ModuleJob] = {}
    try:
        for m in modules.values():
            if m.chosen is None:
                continue
            job = ModuleJob(m.prefix, m.chosen.spec.name, m.chosen.bits, m.chosen.G,
                            {short: src_tensor(ckpt, full) for short, full in m.tensors.items()})
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
            st = src_tensor(ckpt, full)
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
    side, skipped = side_files(ckpt.directory, src_path.is_dir() or src_path.name.endswith(".json"))
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
    except OSError as exc:  # EACCES on DST's directory, a failed rename, SRC unreadable mid-way, ...
        where = f" ({exc.filename})" if exc.filename else ""
        raise ConvertRefused([error("convert.io-error", f"{exc.strerror or exc}{where}",
                                    hint="nothing was written at DST; check permissions and the disk, then retry")], **ctx) from None
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
            run_jobs(shard_jobs, jobs, tick)
        except ModuleFailure as exc:
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
        dst_check = check_and_close(open_checkpoint(staging.path))
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
