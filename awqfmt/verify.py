"""`awqfmt verify`: run every quantized module's packed weights on seeded random activations and compare.

For each module, one at a time (peak memory is one module, not the checkpoint):

1. draw fp16 activations x [M, K] from a generator seeded by (seed, module name, K), so the same module of
   another checkpoint gets the very same x;
2. y = the backend's GEMM on the tensors *as stored* (CUDA kernel, or the numpy field-plane GEMM);
3. ref = x @ W in float64, with W from `logical.decode` (the spec-driven unpack the rest of awqfmt trusts);
4. pass when ||y - ref|| / ||ref|| <= 2e-3 and y has no NaN or inf.

With `against`, the module of the same name in OTHER (any layout, or a dense fp16/bf16/fp32 `weight` from
`awqfmt convert --to fp16`) runs on the same x, checks itself the same way, and its output is compared with
this checkpoint's: a conversion that changed any weight shows as a difference. With `reference`, the
dequantized weights are also compared with the original unquantized model (`reference_compare`).

Every problem becomes a `Finding` naming the module; the CLI exits 1 when there is any.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from . import dtypes
from .checkpoint import Checkpoint, open_checkpoint
from .findings import Finding, Severity, error, sort_findings, warning
from .logical import DecodeError, LogicalModule, decode
from .modules import Fit, QuantModule, fit_modules, group_modules
from .reference_compare import OriginalWeights, ReferenceModule, compare_with_original
from .verify_backends import Backend, BackendCannotRun, BackendFailed, NumpyBackend, select_backend

TOLERANCE = 2e-3
DEFAULT_TOKENS = 8
DEFAULT_SEED = 0
REF_CHUNK_BYTES = 64 << 20  # float64 weight rows dequantized at a time for the reference product


class VerifyUsageError(ValueError):
    """A bad option value (tokens, backend): exit status 2."""


# ---- results --------------------------------------------------------------------------------------------------

@dataclass
class Comparison:
    """y against an expected output: max |y - expected|, ||y - expected|| / ||expected||, non-finite count."""

    max_abs_err: float
    rel_err: float
    nonfinite: int
    ok: bool

    def to_json(self) -> dict:
        return {"max_abs_err": _finite_or_none(self.max_abs_err), "rel_err": _finite_or_none(self.rel_err),
                "nonfinite": self.nonfinite, "ok": self.ok}


@dataclass
class SideRun:
    """One checkpoint's module run through a backend and checked against its own float64 reference."""

    layout: str
    bits: int | None
    K: int
    N: int
    group_size: int | None
    backend: str
    time_s: float
    check: Comparison | None  # None for dense weights: they are their own reference

    def to_json(self) -> dict:
        return {"layout": self.layout, "bits": self.bits, "K": self.K, "N": self.N, "group_size": self.group_size,
                "backend": self.backend, "time_s": round(self.time_s, 6),
                "check": self.check.to_json() if self.check else None}


@dataclass
class ModuleVerification:
    name: str
    run: SideRun | None = None
    against: SideRun | None = None
    outputs: Comparison | None = None  # against's output vs this checkpoint's output
    reference: ReferenceModule | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.severity == Severity.ERROR for f in self.findings)

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "run": self.run.to_json() if self.run else None,
                "against": self.against.to_json() if self.against else None,
                "outputs": self.outputs.to_json() if self.outputs else None,
                "reference": self.reference.to_json() if self.reference else None,
                "findings": [f.code for f in self.findings]}


@dataclass
class VerifyResult:
    path: str
    against: str | None
    reference: str | None
    backend_requested: str
    backend: str
    tokens: int
    seed: int
    tolerance: float
    modules: list[ModuleVerification] = field(default_factory=list)
    missing_in_against: list[str] = field(default_factory=list)
    missing_in_checkpoint: list[str] = field(default_factory=list)
    missing_in_reference: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def errors(self) -> int:
        return sum(f.severity == Severity.ERROR for f in self.findings)

    @property
    def ok(self) -> bool:
        return self.errors == 0

    @property
    def failed_modules(self) -> list[str]:
        return [m.name for m in self.modules if not m.ok]

    def to_json(self) -> dict:
        return {
            "path": self.path, "against": self.against, "reference": self.reference,
            "backend": {"requested": self.backend_requested, "used": self.backend},
            "tokens": self.tokens, "seed": self.seed, "tolerance": self.tolerance, "notes": self.notes,
            "elapsed_s": round(self.elapsed_s, 3),
            "modules": [m.to_json() for m in self.modules],
            "missing": {"in_against": self.missing_in_against, "in_checkpoint": self.missing_in_checkpoint,
                        "in_reference": self.missing_in_reference},
            "findings": [f.to_json() for f in self.findings],
            "summary": {"modules": len(self.modules), "passed": sum(m.ok for m in self.modules),
                        "failed": len(self.failed_modules), "errors": self.errors, "ok": self.ok},
        }


def _finite_or_none(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None  # JSON has no NaN / inf


# ---- numerics -------------------------------------------------------------------------------------------------

def activations(name: str, K: int, tokens: int, seed: int) -> np.ndarray:
    """Seeded fp16 activations [tokens, K]; identical for the module of the same name in any checkpoint."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), K])
    return rng.standard_normal((tokens, K), dtype=np.float32).astype(np.float16)


def reference_output(module: LogicalModule, x: np.ndarray, xp=np) -> np.ndarray:
    """x @ W in float64, W[k, n] = (codes[k, n] - zeros[g[k], n]) * scales[g[k], n] from the logical decode,
    dequantized a block of rows at a time (whole groups at a time, broadcast, when g is k // group_size).

    xp: the array module doing the arithmetic: numpy, or cupy with the GPU backend (the codes travel as uint8 and
    the float64 blocks are built and multiplied on the device; 8192 x 28672, 8 tokens: 0.61 s with cupy on an
    H100 against 0.98 s with numpy on that machine's 16 cores, first call included, identical results). The
    result is always a numpy float64 array."""
    scales = xp.asarray(dtypes.to_float64(module.scales, module.scale_dtype))
    zeros = xp.asarray(module.zeros.astype(np.float64))
    x64 = xp.asarray(np.asarray(x, dtype=np.float64))
    K, N = module.K, module.N
    y = xp.zeros((x64.shape[0], N), dtype=np.float64)
    rows_per_step = max(1, REF_CHUNK_BYTES // (8 * max(1, N)))
    group = K if module.group_size == -1 else module.group_size
    if module.g_idx is None and group > 0 and K % group == 0:
        groups_per_step = max(1, rows_per_step // group)
        for g0 in range(0, K // group, groups_per_step):
            g1 = min(K // group, g0 + groups_per_step)
            w = xp.asarray(module.codes[g0 * group:g1 * group]).reshape(g1 - g0, group, N).astype(np.float64)
            w -= zeros[g0:g1, None, :]
            w *= scales[g0:g1, None, :]
            y += x64[:, g0 * group:g1 * group] @ w.reshape(-1, N)
    else:
        g = xp.asarray(module.effective_g_idx())
        for k0 in range(0, K, rows_per_step):
            k1 = min(K, k0 + rows_per_step)
            rows = g[k0:k1]
            y += x64[:, k0:k1] @ ((xp.asarray(module.codes[k0:k1]).astype(np.float64) - zeros[rows]) * scales[rows])
    return y if xp is np else xp.asnumpy(y)


def compare(y: np.ndarray, expected: np.ndarray, tolerance: float) -> Comparison:
    y64 = np.asarray(y, dtype=np.float64)
    nonfinite = int(np.count_nonzero(~np.isfinite(y64)))
    diff = y64 - expected
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    num, den = float(np.linalg.norm(diff)), float(np.linalg.norm(expected))
    rel = num / den if den > 0 else (0.0 if num == 0 else float("inf"))
    return Comparison(max_abs, rel, nonfinite, nonfinite == 0 and np.isfinite(rel) and rel <= tolerance)


# ---- resolving modules ---------------------------------------------------------------------------------------

@dataclass
class _Source:
    """A module of one checkpoint: packed (fit set), dense (a float `weight`), or unusable (problem set)."""

    name: str
    module: QuantModule | None = None
    fit: Fit | None = None
    dense: str | None = None
    problem: str | None = None


def _quant_sources(ckpt: Checkpoint) -> dict[str, _Source]:
    modules, _ = group_modules(ckpt)
    fit_modules(ckpt, modules)
    out = {}
    for prefix, m in modules.items():
        fit = m.chosen
        problem = None
        if fit is None:
            shapes = {s: list(ckpt.entry(f).shape) for s, f in m.tensors.items()}
            problem = (f"tensors {shapes} fit no layout spec at any bit width / group size"
                       + ("" if m.family else " (an incomplete set of tensors)") + "; run `awqfmt check` for details")
        out[prefix] = _Source(prefix, m, fit, problem=problem)
    return out


def _dense_source(ckpt: Checkpoint, name: str) -> _Source | None:
    full = f"{name}.weight"
    if full not in ckpt.locations:
        return None
    entry = ckpt.entry(full)
    if entry.dtype not in dtypes.FLOAT_DTYPES or len(entry.shape) != 2:
        return None
    return _Source(name, dense=full)


# ---- running one side --------------------------------------------------------------------------------------

@dataclass
class _Loaded:
    tensors: dict[str, np.ndarray]
    dtype_names: dict[str, str]
    logical: LogicalModule


def _load(ckpt: Checkpoint, src: _Source) -> _Loaded:
    """Read and decode one packed module; DecodeError / ValueError for data the layout cannot hold."""
    fit = src.fit
    tensors = {short: np.asarray(ckpt.array(full)) for short, full in src.module.tensors.items()}
    dtype_names = {short: ckpt.entry(full).dtype for short, full in src.module.tensors.items()}
    logical = decode(fit.spec, tensors, dtype_names, fit.bits, fit.G)
    g = logical.effective_g_idx()
    if g.size and (int(g.min()) < 0 or int(g.max()) >= logical.n_groups):
        raise DecodeError("values.g-idx-range", f"g_idx values span [{int(g.min())}, {int(g.max())}], outside [0, {logical.n_groups})")
    return _Loaded(tensors, dtype_names, logical)


def _run_packed(backend: Backend, fallback: Backend, src: _Source, loaded: _Loaded, x: np.ndarray,
                notes: list[Finding]) -> tuple[np.ndarray, str, float]:
    """Run on `backend` when it has a kernel for the layout and width, else (or when it refuses) on `fallback`."""
    fit = src.fit
    chosen = backend if backend.supports(fit.spec, fit.bits) else fallback
    try:
        if getattr(chosen, "warm_up", False):  # the first launch of a kernel variant compiles it: keep that out of the time
            chosen.gemm(fit.spec, loaded.tensors, loaded.dtype_names, fit.bits, fit.G, x)
        t0 = time.perf_counter()
        y = chosen.gemm(fit.spec, loaded.tensors, loaded.dtype_names, fit.bits, fit.G, x)
    except (BackendCannotRun, BackendFailed) as exc:
        if isinstance(exc, BackendFailed):
            notes.append(error("verify.kernel-failed", f"the {chosen.name} kernel failed on this module: {exc}",
                               hint="a kernel or driver failure on this machine (rerun with AWQFMT_DEBUG=1 and report it); "
                                    f"the module was verified on {fallback.name} so the checkpoint itself is still judged",
                               module=src.name))
        else:
            notes.append(warning("verify.backend-fallback", f"the {chosen.name} backend cannot run this module ({exc}); "
                                 f"verified on {fallback.name} instead", hint="a kernel gap, not a checkpoint defect",
                                 module=src.name))
        chosen = fallback
        t0 = time.perf_counter()
        y = chosen.gemm(fit.spec, loaded.tensors, loaded.dtype_names, fit.bits, fit.G, x)
    return y, chosen.name, time.perf_counter() - t0


def _run_dense(ckpt: Checkpoint, src: _Source, x: np.ndarray) -> tuple[np.ndarray, float]:
    w = dtypes.to_float32(ckpt.array(src.dense), ckpt.entry(src.dense).dtype)
    t0 = time.perf_counter()
    y = np.asarray(x, dtype=np.float32) @ w.T
    return y, time.perf_counter() - t0


# ---- the driver ------------------------------------------------------------------------------------------------

def verify_path(path: str | Path, *, against: str | Path | None = None, reference: str | Path | None = None,
                backend: str | Backend = "auto", tokens: int = DEFAULT_TOKENS, seed: int = DEFAULT_SEED,
                tolerance: float = TOLERANCE,
                progress: Callable[[int, int], None] | None = None) -> VerifyResult:
    """Verify a checkpoint (and optionally OTHER and the original model).

    `backend`: "auto" | "cupy" | "numpy", or any object with the `verify_backends.Backend` interface. Raises
    CheckpointNotFound for a missing path, VerifyUsageError for bad options, BackendUnavailable for `cupy`
    without a GPU."""
    if tokens < 1:
        raise VerifyUsageError(f"--tokens must be at least 1 (got {tokens})")
    if not 0 <= seed < 2**63:
        raise VerifyUsageError(f"--seed must be a non-negative integer below 2^63 (got {seed})")
    be, note = select_backend(backend) if isinstance(backend, str) else (backend, None)
    opened: list[Checkpoint] = []
    t0 = time.perf_counter()
    try:
        ckpt = open_checkpoint(path)
        opened.append(ckpt)
        other = open_checkpoint(against) if against is not None else None
        if other is not None:
            opened.append(other)
        orig = open_checkpoint(reference) if reference is not None else None
        if orig is not None:
            opened.append(orig)
        result = VerifyResult(str(ckpt.path), str(other.path) if other else None, str(orig.path) if orig else None,
                              backend if isinstance(backend, str) else be.name, be.name, tokens, seed, tolerance)
        if note:
            result.notes.append(note)
        with np.errstate(all="ignore"):  # inf/NaN scales are reported as findings, not as numpy warnings
            _verify(result, ckpt, other, orig, be, tokens, seed, tolerance, progress)
        result.elapsed_s = time.perf_counter() - t0
        return result
    finally:
        for c in opened:
            c.close()


def _container_findings(ckpt: Checkpoint, role: str) -> list[Finding]:
    """Integrity errors of the files (truncation, bad header...): the modules they hit cannot be verified."""
    out = []
    for f in ckpt.all_findings():
        if f.severity == Severity.ERROR:
            out.append(Finding(f.severity, f.code, f"{role}: {f.message}", f.hint, f.file, f.module, f.tensor, f.evidence))
    return out


def _verify(result: VerifyResult, ckpt: Checkpoint, other: Checkpoint | None, orig: Checkpoint | None,
            be: Backend, tokens: int, seed: int, tolerance: float, progress: Callable[[int, int], None] | None = None) -> None:
    findings = _container_findings(ckpt, "checkpoint")
    mine = _quant_sources(ckpt)
    theirs: dict[str, _Source] = {}
    if other is not None:
        findings += _container_findings(other, "against")
        theirs = _quant_sources(other)
    originals = None
    if orig is not None:
        findings += _container_findings(orig, "reference")
        originals = OriginalWeights(orig)
    fallback = NumpyBackend()
    unsupported: set[str] = set()
    for done, (name, src) in enumerate(mine.items(), 1):
        mv = _verify_module(name, src, ckpt, other, theirs, originals, be, fallback, tokens, seed, tolerance, result)
        if progress is not None:
            progress(done, len(mine))
        if mv.run and mv.run.backend != be.name:
            unsupported.add(f"{mv.run.layout} {mv.run.bits}-bit")
        result.modules.append(mv)
        findings += mv.findings
    if unsupported:
        result.notes.append(f"the {be.name} backend has no kernel for {', '.join(sorted(unsupported))}: those modules ran on numpy")
    if other is not None:
        result.missing_in_checkpoint = [n for n in theirs if n not in mine]
        for n in result.missing_in_checkpoint:
            findings.append(error("verify.missing-module", f"module {n} is in the --against checkpoint but not in the checkpoint",
                                  hint="the two checkpoints do not hold the same modules", module=n,
                                  file=other.file_of(next(iter(theirs[n].module.tensors.values())))))
    if not mine:
        findings.append(error("verify.no-modules", "no quantized module found (no qweight / weight_packed tensors)",
                              hint="verify runs quantized modules; is this an unquantized model?", file=next(iter(ckpt.files), None)))
    if originals is not None and result.missing_in_reference:
        n = len(result.missing_in_reference)
        compared = sum(m.reference is not None for m in result.modules)
        example = next(iter(sorted(originals.modules)), None)
        message = (f"{n} quantized module(s) have no `<module>.weight` (or `<module>.orig`) in the reference "
                   f"(first: {result.missing_in_reference[0]}); {compared} compared")
        hint = "is ORIGINAL the model this checkpoint was quantized from? " + (
            f"Its weights are named like {originals.tensor_of[example]}" if example else "It has no `.weight` or `.orig` tensors")
        if compared == 0:  # nothing compared at all: the names do not line up, and --reference checked nothing
            findings.append(error("reference.missing-weights", message, hint=hint, file=next(iter(orig.files), None)))
        else:
            findings.append(warning("reference.missing-weights", message, hint=hint, file=next(iter(orig.files), None)))
    result.findings = sort_findings(findings)


def _verify_module(name: str, src: _Source, ckpt: Checkpoint, other: Checkpoint | None, theirs: Mapping[str, _Source],
                   orig: OriginalWeights | None, be: Backend, fallback: Backend, tokens: int, seed: int, tolerance: float,
                   result: VerifyResult) -> ModuleVerification:
    mv = ModuleVerification(name)
    where = ckpt.file_of(next(iter(src.module.tensors.values()))) if src.module and src.module.tensors else None

    def fail(code: str, message: str, hint: str | None = None, tensor: str | None = None, **evidence) -> ModuleVerification:
        mv.findings.append(error(code, message, hint=hint, file=where, module=name, tensor=tensor, evidence=evidence))
        return mv

    if src.problem:
        return fail("verify.undecodable", f"cannot verify: {src.problem}")
    fit = src.fit
    try:
        loaded = _load(ckpt, src)
    except (DecodeError, ValueError) as exc:
        return fail("verify.undecodable", f"cannot decode as {fit.bits}-bit {fit.spec.name}: {exc}", tensor=getattr(exc, "tensor", None))
    x = activations(name, fit.K, tokens, seed)
    ref = reference_output(loaded.logical, x, be.array_module)
    y, used, secs = _run_packed(be, fallback, src, loaded, x, mv.findings)
    check = compare(y, ref, tolerance)
    mv.run = SideRun(fit.spec.name, fit.bits, fit.K, fit.N, fit.G, used, secs, check)
    if not np.all(np.isfinite(ref)):
        fail("verify.reference-nonfinite", "the float64 reference output has NaN or inf: the scales hold inf/NaN",
             hint="run `awqfmt check` (values.scale-nonfinite); this module cannot produce finite outputs")
    elif check.nonfinite:
        fail("verify.nonfinite", f"the {used} backend's output holds {check.nonfinite} NaN/inf value(s) of {y.size}",
             hint="the kernel read out of bounds or mis-decoded the scales", nonfinite=check.nonfinite)
    elif not check.ok:
        fail("verify.kernel-mismatch", f"the {used} backend on the stored {fit.spec.name} words differs from the float64 reference "
             f"of the logical decode: relative error {check.rel_err:.3g} > {tolerance:g} (max abs {check.max_abs_err:.3g})",
             hint="the packed words and the layout spec disagree (field order, orientation, zero offset) or the kernel is wrong",
             rel_err=_finite_or_none(check.rel_err))
    if other is not None:
        _against(mv, name, fit, ckpt, other, theirs, x, y, fallback, be, tolerance, result, fail)
    if orig is not None:
        w, why = orig.weight(name, fit.K, fit.N)
        if w is None:
            if why:
                fail("reference.shape", why, tensor=orig.tensor_name(name))
            else:
                result.missing_in_reference.append(name)
        else:
            mv.reference = compare_with_original(name, fit.spec, src.module.tensors, loaded.tensors, loaded.logical, w)
            mv.findings += mv.reference.findings
    return mv


def _against(mv: ModuleVerification, name: str, fit: Fit, ckpt: Checkpoint, other: Checkpoint, theirs: Mapping[str, _Source],
             x: np.ndarray, y: np.ndarray, fallback: Backend, be: Backend, tolerance: float, result: VerifyResult, fail) -> None:
    src = theirs.get(name) or _dense_source(other, name)
    if src is None:
        result.missing_in_against.append(name)
        fail("verify.missing-module", f"module {name} is in the checkpoint but not in the --against checkpoint",
             hint="the conversion dropped it, or the two checkpoints are different models")
        return
    if src.problem:
        fail("verify.undecodable", f"cannot verify the --against module: {src.problem}")
        return
    if src.dense is not None:
        entry = other.entry(src.dense)
        if tuple(entry.shape) != (fit.N, fit.K):
            fail("verify.shape-mismatch", f"--against has a dense {list(entry.shape)} weight, the checkpoint's module is "
                 f"[N={fit.N}, K={fit.K}]", tensor=src.dense)
            return
        y_other, secs = _run_dense(other, src, x)
        mv.against = SideRun(f"dense-{entry.dtype}", None, fit.K, fit.N, None, "numpy", secs, None)
    else:
        ofit = src.fit
        if (ofit.K, ofit.N) != (fit.K, fit.N):
            fail("verify.shape-mismatch", f"--against's module is K={ofit.K}, N={ofit.N}; the checkpoint's is K={fit.K}, N={fit.N}")
            return
        try:
            loaded = _load(other, src)
        except (DecodeError, ValueError) as exc:
            fail("verify.undecodable", f"cannot decode the --against module as {ofit.bits}-bit {ofit.spec.name}: {exc}")
            return
        y_other, used, secs = _run_packed(be, fallback, src, loaded, x, mv.findings)
        own = compare(y_other, reference_output(loaded.logical, x, be.array_module), tolerance)
        mv.against = SideRun(ofit.spec.name, ofit.bits, ofit.K, ofit.N, ofit.G, used, secs, own)
        if not own.ok:
            fail("verify.kernel-mismatch", f"--against ({ofit.spec.name}): the {used} backend differs from its own float64 reference: "
                 f"relative error {own.rel_err:.3g} > {tolerance:g}", hint="the --against checkpoint's words and its layout spec disagree",
                 rel_err=_finite_or_none(own.rel_err))
    mv.outputs = compare(y_other, np.asarray(y, dtype=np.float64), tolerance)
    if not mv.outputs.ok:
        fail("verify.against-mismatch", f"outputs differ from --against ({mv.against.layout}): relative error {mv.outputs.rel_err:.3g} "
             f"> {tolerance:g} (max abs {mv.outputs.max_abs_err:.3g}) on the same activations",
             hint="the conversion changed this module's weights (a wrong field order, zero offset or scale)",
             rel_err=_finite_or_none(mv.outputs.rel_err))
