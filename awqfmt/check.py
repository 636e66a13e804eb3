"""`awqfmt check`: apply the named rules of specs/RULES.md to a checkpoint and collect findings.

Default mode reads headers, configs and the small tensors (scales, zeros, g_idx) fully and samples qweight
(a few groups per module); `deep=True` reads every packed word. Rules never raise on bad data: each defect
becomes a `Finding` naming file, module, tensor and rule.
"""

from __future__ import annotations

import fnmatch
import gc
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import dtypes
from .checkpoint import Checkpoint, open_checkpoint
from .findings import Finding, error, info, sort_findings, warning
from .logical import DecodeError, RepresentationError, decode, encode
from .modules import Fit, QuantModule, choose_layout, fit_module, group_modules
from .packing import unpack
from .spec import LayoutSpec, Packing, all_specs, evaluate

SAMPLE_GROUPS = 6  # groups of qweight rows decoded per module, spread evenly over K (first, last, four between)
# Default mode decodes at most this many qweight codes per module (the sampled groups' rows, leading output
# columns): ~1k (group, column) cells at group 128, plenty to tell field orders apart, and a Llama-70B-shaped
# checkpoint stays within its 2 s budget (benchmarks/scale).
SAMPLE_CODES = 1 << 17
# ... and samples the pack order of at most this many modules per shape, evenly spread (all with --deep): a
# 100k-tensor MoE has thousands of identical experts whose qweight together is the whole checkpoint.
SAMPLE_MODULES_PER_SHAPE = 256
# What loaders assume when a config leaves a field out (transformers AwqConfig / GPTQConfig, AutoGPTQ
# BaseQuantizeConfig): a missing field is only harmless when the tensors happen to match the default.
LOADER_DEFAULTS = {"bits": 4, "group_size": 128}
ORDER_MARGIN = 5.0  # percentage points another field order must win by before we call the stored order wrong


@dataclass
class CheckResult:
    path: str
    layout: dict
    modules: int
    tensors: int
    findings: list[Finding]
    module_stats: dict[str, dict] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(f.severity.value == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity.value == "warning" for f in self.findings)

    def to_json(self) -> dict:
        return {
            "path": self.path, "layout": self.layout, "modules": self.modules, "tensors": self.tensors,
            "findings": [f.to_json() for f in self.findings],
            "summary": {"errors": self.errors, "warnings": self.warnings},
        }


def check_path(path: str | Path, deep: bool = False) -> CheckResult:
    with _cyclic_gc_paused():
        ckpt = open_checkpoint(path)
        try:
            return check_checkpoint(ckpt, deep=deep)
        finally:
            ckpt.close()


@contextmanager
def _cyclic_gc_paused():
    """Headers, modules and findings are acyclic objects created by the 100k (a 100k-tensor checkpoint): the cyclic
    collector would rescan the growing heap again and again (40% of such a check). Reference counting still frees
    everything; the collector resumes when the check returns."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_checkpoint(ckpt: Checkpoint, deep: bool = False) -> CheckResult:
    findings = ckpt.all_findings()
    cfg = ckpt.config
    modules, unquantized = group_modules(ckpt)
    config_layouts = cfg.matching_layouts()
    if cfg.get("quant_method") and not config_layouts:
        findings.append(error("config.unknown-layout", f"no layout spec matches quant_method={cfg.get('quant_method')!r} "
                              f"with format/version/checkpoint_format {cfg.get('format') or cfg.get('version') or cfg.get('checkpoint_format')!r}",
                              hint=f"awqfmt knows {', '.join(all_specs())}", file=_cfg_file(cfg)))
    cfg_bits = cfg.get("bits") if isinstance(cfg.get("bits"), int) else None
    cfg_group = cfg.get("group_size") if isinstance(cfg.get("group_size"), int) else None
    stats: dict[str, dict] = {}
    fit_cache: dict[tuple, tuple[list, list]] = {}
    for module in modules.values():
        key = _shape_key(ckpt, module)
        if key is not None and key in fit_cache:
            module.fits, module.family = fit_cache[key]
        else:
            fit_module(ckpt, module, cfg_bits, cfg_group)
            if not module.fits and module.family and (cfg_bits is not None or cfg_group is not None):
                # the config's bits/group_size fit nothing: fit from shapes alone, so that the report can say
                # "tensors are 8-bit, config says 4" instead of "fits nothing"
                module.fits, module.family = [], []
                fit_module(ckpt, module, None, None)
            if key is not None:
                fit_cache[key] = (module.fits, module.family)
        module.chosen = choose_layout(module, config_layouts)
    chosen = Counter(m.chosen.spec.name for m in modules.values() if m.chosen)
    detected = chosen.most_common(1)[0][0] if chosen else None
    findings += _layout_findings(ckpt, modules, config_layouts, detected)
    findings += _missing_field_findings(cfg, config_layouts, modules)
    order_sample = None if deep else _order_sample(modules)
    for module in modules.values():
        findings += _module_findings(ckpt, module, cfg, config_layouts, deep, stats,
                                     sample_order=order_sample is None or module.prefix in order_sample)
    findings += _ignore_list_findings(ckpt, modules, unquantized)
    if not modules and not any(f.severity.value == "error" for f in findings):
        findings.append(error("checkpoint.no-quantized-modules", "no quantized module found (no qweight / weight_packed tensors)",
                              hint="is this an unquantized model?", file=next(iter(ckpt.files), None)))
    bits = Counter(m.chosen.bits for m in modules.values() if m.chosen)
    groups = Counter(m.chosen.G for m in modules.values() if m.chosen)
    layout = {
        "detected": detected,
        "config": config_layouts[0].name if config_layouts else None,
        "config_files": cfg.files,
        "bits": bits.most_common(1)[0][0] if bits else cfg_bits,
        "group_size": groups.most_common(1)[0][0] if groups else cfg_group,
        "sym": cfg.get("sym") if cfg.get("sym") is not None else (not cfg.get("zero_point") if cfg.get("zero_point") is not None else None),
        "desc_act": cfg.get("desc_act"),
        "quantized_modules": sum(1 for m in modules.values() if m.chosen),
        "unquantized_tensors": len(unquantized),
        "files": len(ckpt.files),
        "index": ckpt.index_name,
    }
    return CheckResult(str(ckpt.path), layout, len(modules), len(ckpt.locations), sort_findings(_dedupe(findings)), stats)


def _cfg_file(cfg) -> str | None:
    return cfg.files[0] if cfg.files else None


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.code, f.file, f.module, f.tensor, f.message)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


def _shape_key(ckpt: Checkpoint, module: QuantModule) -> tuple | None:
    """Modules with identical tensor shapes fit identically: 100k-tensor checkpoints evaluate each shape once."""
    if "weight_shape" in module.tensors:
        return None  # fit depends on the tensor's values
    return tuple(sorted((short, ckpt.entry(full).shape) for short, full in module.tensors.items()))


# ---- layout ------------------------------------------------------------------------------------------------

def _missing_field_findings(cfg, config_layouts, modules) -> list[Finding]:
    """AWQ and GPTQ loaders fill a missing bits / group_size with a default; that is only right by luck."""
    out = []
    if (cfg.model_config is not None and isinstance(cfg.model_config.get("quantization_config"), dict)
            and "quant_method" not in cfg.model_config["quantization_config"]):
        out.append(error("config.missing-field", "config.json has a quantization_config without quant_method",
                         hint="transformers and vLLM refuse such a config: add \"quant_method\" (awq, gptq or compressed-tensors)",
                         file="config.json"))
    if not modules or not any(s.config.get("match", {}).get("quant_method", [None])[0] in ("awq", "gptq") for s in config_layouts):
        return out
    seen = {"bits": Counter(m.chosen.bits for m in modules.values() if m.chosen),
            "group_size": Counter(m.chosen.G for m in modules.values() if m.chosen)}
    for key, default in LOADER_DEFAULTS.items():
        if key in cfg.values or key in cfg.invalid:
            continue
        actual = seen[key].most_common(1)[0][0] if seen[key] else None
        if actual is None or actual == default:
            out.append(warning("config.missing-field", f"the quantization config has no {key}; loaders assume {key}={default}, which the tensors match",
                               hint=f"write {key} explicitly: not every loader has the same default", file=_cfg_file(cfg)))
        else:
            out.append(error("config.missing-field", f"the quantization config has no {key}; loaders assume {key}={default}, but the tensors have {key}={actual}",
                             hint=f"add \"{key}\": {actual} to the quantization config", file=_cfg_file(cfg), evidence={"default": default, "tensors": actual}))
    return out


def _layout_findings(ckpt, modules, config_layouts, detected) -> list[Finding]:
    out = []
    cfg = ckpt.config
    if not modules:
        return out
    if not cfg.present:
        out.append(warning("config.missing", "no quantization config found (config.json quantization_config, quantize_config.json, quant_config.json)",
                           hint=f"loaders cannot tell the layout; tensors look like {detected}: add the config that layout's tool writes",
                           file=None))
        return out
    if detected and config_layouts and all(detected != s.name for s in config_layouts):
        config_family = {s.name for s in config_layouts}
        fits_config = [m for m in modules.values() if any(f.spec.name in config_family for f in m.fits)]
        if not fits_config:
            out.append(error("layout.config-mismatch",
                             f"config says {'/'.join(sorted(config_family))} but the tensors have {detected} shapes",
                             hint="the config and the tensors come from different layouts: fix quantization_config or convert the tensors",
                             file=_cfg_file(cfg), evidence={"config": sorted(config_family), "tensors": detected}))
            return out
    if config_layouts:
        names = {s.name for s in config_layouts}
        for m in modules.values():
            if m.chosen is not None and m.chosen.spec.name not in names:
                out.append(error("layout.module-mismatch", f"this module's tensors have {m.chosen.spec.name} shapes; the config says {'/'.join(sorted(names))}",
                                 hint="one checkpoint mixes layouts: loaders read every module as the config says; convert this module",
                                 file=ckpt.file_of(next(iter(m.tensors.values()))), module=m.prefix,
                                 tensor=m.tensors.get(m.chosen.spec.tensor("codes").name)))
    return out


# ---- per module ----------------------------------------------------------------------------------------------

def _module_findings(ckpt: Checkpoint, module: QuantModule, cfg, config_layouts, deep: bool, stats: dict,
                     sample_order: bool = True) -> list[Finding]:
    out: list[Finding] = []
    m = module.prefix
    first_file = ckpt.file_of(next(iter(module.tensors.values())))

    def full_name(short):  # a tensor the module lacks is still named in full: prefix.short
        return None if short is None else module.tensors.get(short, f"{m}.{short}")

    def err(code, msg, hint=None, tensor=None, **ev):
        out.append(error(code, msg, hint=hint, file=ckpt.file_of(module.tensors[tensor]) if tensor in module.tensors else first_file,
                         module=m, tensor=full_name(tensor), evidence=ev))

    def warn(code, msg, hint=None, tensor=None, **ev):
        out.append(warning(code, msg, hint=hint, file=ckpt.file_of(module.tensors[tensor]) if tensor in module.tensors else first_file,
                           module=m, tensor=full_name(tensor), evidence=ev))

    if not module.family:
        names = sorted(module.tensors)
        best = max(all_specs().values(), key=lambda s: len(set(s.tensor_names) & set(names)))
        missing = sorted(best.required_names - set(names))
        err("module.missing-tensor", f"has {', '.join(names)} but lacks {', '.join(missing)} required by layout {best.name}",
            hint="the checkpoint is incomplete (a shard or tensor was dropped); loaders may run it with zero-filled weights",
            tensor=missing[0] if missing else None)
        return out
    fit = module.chosen
    if fit is None:
        spec = next((s for s in module.family if s in config_layouts), module.family[0])
        shapes = {short: list(ckpt.entry(full).shape) for short, full in module.tensors.items()}
        err("module.shape", f"tensor shapes {shapes} fit no bit width / group size of layout {spec.name}"
            + (f" (config: bits={cfg.get('bits')}, group_size={cfg.get('group_size')})" if cfg.present else ""),
            hint="compare with the spec's shape formulas (`awqfmt layout " + spec.name + "`); a group_size or bits mismatch is the usual cause",
            tensor=spec.tensor("codes").name)
        return out
    spec, b, K, N, G = fit.spec, fit.bits, fit.K, fit.N, fit.G
    # dtypes
    wrong_dtype = []
    for t in spec.tensors:
        if t.name in module.tensors:
            dt = ckpt.entry(module.tensors[t.name]).dtype
            if dt not in t.dtypes:
                wrong_dtype.append(t.role)
                err("module.dtype", f"{t.name} is {dt}; layout {spec.name} allows {', '.join(t.dtypes)}",
                    hint="re-export with the dtype the layout's kernels read", tensor=t.name)
    # invariants from the spec
    env, failed_invariants = _shape_facts(spec, K, N, G, b)  # evaluated once per layout and shape
    for inv in failed_invariants:
        err(inv.code, f"{inv.message} (K={K}, N={N}, group_size={G}, bits={b})", hint="such a module cannot be packed by this layout's tools",
            tensor=spec.tensor("codes").name)
    # config consistency
    if isinstance(cfg.get("bits"), int) and cfg.get("bits") != b:
        err("module.config-bits", f"tensors fit {b}-bit {spec.name}, config says bits={cfg.get('bits')}",
            hint="fix bits in the config", tensor=spec.tensor("codes").name)
    if isinstance(cfg.get("group_size"), int) and cfg.get("group_size") != G and not (G == -1 and cfg.get("group_size") == K):
        err("module.config-group", f"scales have {env['n_g']} groups over K={K} (group_size {G}); config says group_size={cfg.get('group_size')}",
            hint="a group_size mismatch makes loaders mis-shape qzeros/scales (text-generation-webui#541)", tensor=spec.tensor("scales").name)
    if set(wrong_dtype) & {"codes", "zeros", "scales", "g_idx"}:
        return out  # values stored in a dtype the layout does not define cannot be read as that layout's fields
    out += _value_findings(ckpt, module, fit, cfg, deep, stats, err, warn, sample_order)
    if deep:
        out += _roundtrip_findings(ckpt, module, fit, err)
    return out


def _read(ckpt: Checkpoint, module: QuantModule, short: str) -> tuple[np.ndarray, str]:
    full = module.tensors[short]
    return ckpt.array(full), ckpt.entry(full).dtype


def _value_findings(ckpt, module, fit: Fit, cfg, deep, stats, err, warn, sample_order: bool = True) -> list[Finding]:
    out: list[Finding] = []
    spec, b, K, N, G = fit.spec, fit.bits, fit.K, fit.N, fit.G
    n_g = _shape_facts(spec, K, N, G, b)[0]["n_g"]
    group = K if G == -1 or G > K else G  # a group_size beyond K (config-given) is one group
    # scales: finite and > 0, tested on the raw bits
    st = spec.tensor("scales")
    scales, sdt = _read(ckpt, module, st.name)
    if sdt in dtypes.FLOAT_DTYPES and not _all_positive_finite(scales, sdt):
        bad_nf = int(np.count_nonzero(dtypes.nonfinite_mask(scales, sdt)))
        if bad_nf:
            err("values.scale-nonfinite", f"{bad_nf} of {scales.size} scales are inf or NaN", hint="the quantizer diverged on this module: re-quantize it",
                tensor=st.name, count=bad_nf)
        bad_np = int(np.count_nonzero(dtypes.nonpositive_mask(scales, sdt) & ~dtypes.nonfinite_mask(scales, sdt)))
        if bad_np:
            err("values.scale-nonpositive", f"{bad_np} of {scales.size} scales are <= 0", hint="AWQ/GPTQ scales are positive by construction: the tensor is corrupt",
                tensor=st.name, count=bad_np)
    # g_idx
    gt = spec.tensor("g_idx")
    g_idx = None
    if gt is not None and gt.name in module.tensors:
        raw, _ = _read(ckpt, module, gt.name)
        g_idx = np.asarray(raw).astype(np.int64)
        if g_idx.size and (g_idx.min() < 0 or g_idx.max() >= n_g):
            err("values.g-idx-range", f"g_idx values span [{int(g_idx.min())}, {int(g_idx.max())}], outside [0, {n_g})",
                hint="g_idx must name a row of scales/qzeros", tensor=gt.name)
            g_idx = None
        else:
            counts = np.bincount(g_idx, minlength=n_g)
            if K % group == 0 and not np.all(counts == group):
                bad = int(np.count_nonzero(counts != group))
                err("values.g-idx-count", f"{bad} group(s) are used a number of times other than group_size={group} (min {int(counts.min())}, max {int(counts.max())})",
                    hint="each group must cover exactly group_size input channels", tensor=gt.name)
            trivial = np.array_equal(g_idx, np.arange(K) // group)
            if not trivial and cfg.get("desc_act") is False:
                err("values.g-idx-act-order", "g_idx is not k // group_size (act-order) but config says desc_act=false",
                    hint="loaders that trust desc_act=false ignore g_idx and compute garbage: set desc_act=true", tensor=gt.name)
            if trivial:
                g_idx = None
    # zeros
    zt = spec.tensor("zeros")
    if zt.name in module.tensors and _zero_rules_apply(spec):
        words, _ = _read(ckpt, module, zt.name)
        zeros_stored = np.asarray(words) if zt.packed_dim is None else \
            unpack(np.asarray(words), spec.packing(b), axis=zt.packed_dim, length=n_g if zt.dims[zt.packed_dim] == "n_g" else N)
        zeros_stored = zeros_stored.T if zt.transposed else zeros_stored
        out += _zero_convention_findings(spec, b, zeros_stored, cfg, err, warn, np.asarray(words), zt)
    # codes sample: pack order of qzeros vs qweight, and (GPTQ) which zero convention the codes support
    if zt.name in module.tensors and sample_order:
        codes, rows_groups = _sample_codes(ckpt, module, fit, g_idx, deep)
        if codes is not None:
            out += _order_findings(ckpt, module, fit, codes, rows_groups, err, stats)
    return out


def _zero_rules_apply(spec: LayoutSpec) -> bool:
    """Whether `_zero_convention_findings` has a rule for this layout (AWQ, compressed-tensors: every field value is
    a valid zero point, so their qzeros are not unpacked in full)."""
    return spec.name in ("gptq", "gptq-v2") or spec.zero_offset < 0


def _zero_convention_findings(spec: LayoutSpec, b: int, fields: np.ndarray, cfg, err, warn, words: np.ndarray, zt) -> list[Finding]:
    """GPTQ v1 stores z-1, v2 (and AWQ, compressed-tensors) store z. Symmetric files have constant fields that
    reveal which convention was written; v1 asymmetric files cannot hold z = 0 (AutoGPTQ's packer corrupts it)."""
    out: list[Finding] = []
    half, top = 1 << (b - 1), (1 << b) - 1
    if fields.size == 0:
        return out
    if spec.name in ("gptq", "gptq-v2") and int(fields.min()) == int(fields.max()):  # two passes instead of a sort
        v = int(fields.min())
        written_as = "gptq" if v == half - 1 else "gptq-v2" if v == half else None
        if written_as and written_as != spec.name:
            err("zeros.v1-v2-mismatch",
                f"every zero field is {v:#x}: symmetric zeros written in {written_as} convention, but the checkpoint is labelled {spec.name}",
                hint=f"set checkpoint_format to {'gptq_v2' if written_as == 'gptq-v2' else 'gptq'} (or convert with awqfmt); read as labelled, every "
                     f"zero is off by one and the model prints garbage (vLLM#38966)", tensor=zt.name, stored_field=v)
    if spec.zero_offset < 0:  # v1: fields of all ones are ambiguous, and mark AutoGPTQ packer corruption
        all_ones = fields == top
        n_all = int(np.count_nonzero(all_ones))
        if n_all:
            corrupted = _v1_corrupted_words(words, spec, b, zt)
            if corrupted:
                err("zeros.v1-packer-corruption",
                    f"{corrupted} qzeros word(s) have a field of all ones with every higher field also all ones: AutoGPTQ's v1 packer stored a zero "
                    f"point of 0 as -1, which also overwrote the higher fields' zeros",
                    hint="the original zeros of those fields are lost: re-quantize with gptq_v2 (checkpoint_format gptq_v2) or a symmetric scheme",
                    tensor=zt.name, words=corrupted, all_ones_fields=n_all)
            else:
                warn("zeros.v1-all-ones",
                     f"{n_all} zero field(s) store {top:#x}: GPTQ v1 readers disagree on them (zero {top + 1} in CUDA/exllama kernels, 0 in masking readers)",
                     hint="convert to gptq-v2 or compressed-tensors, which store the zero point as is", tensor=zt.name, count=n_all)
    return out


def _v1_corrupted_words(words: np.ndarray, spec: LayoutSpec, b: int, zt) -> int:
    """Words where some field is all ones and all fields above it too (a sign-extended -1), but not every field."""
    p = spec.packing(b)
    if p.words != 1:
        return 0
    w = np.asarray(words).view(np.uint32).reshape(-1).astype(np.uint64)
    count = np.zeros(w.shape, dtype=bool)
    for pos in range(1, p.values):
        sh = pos * b
        high = (np.uint64(0xFFFFFFFF) >> np.uint64(sh)) << np.uint64(sh)
        all_high = (w & high) == high
        lower = w & ((np.uint64(1) << np.uint64(sh)) - np.uint64(1))
        count |= all_high & (lower != ((np.uint64(1) << np.uint64(sh)) - np.uint64(1)))
    return int(np.count_nonzero(count))


def sampled_groups(n_g: int, deep: bool) -> np.ndarray:
    """Indices of the groups whose qweight rows the default check decodes (all of them when deep)."""
    if deep or n_g <= SAMPLE_GROUPS:
        return np.arange(n_g)
    return np.unique(np.linspace(0, n_g - 1, SAMPLE_GROUPS).astype(int))


def _sample_codes(ckpt, module, fit: Fit, g_idx, deep: bool):
    """Decoded codes [rows, N] for a sample of whole groups (all groups when deep), and each row's group."""
    spec, b, K, N, G = fit.spec, fit.bits, fit.K, fit.N, fit.G
    group = K if G == -1 or G > K else G
    n_g = -(-K // group)
    ct = spec.tensor("codes")
    words, _ = _read(ckpt, module, ct.name)
    p = spec.packing(b)
    k_axis = ct.dims.index("K")
    if g_idx is not None:  # act-order: groups are scattered over K; read every row (of the leading columns)
        rows = np.arange(K)
        groups_of_rows = g_idx
    else:
        chosen = sampled_groups(n_g, deep)
        rows = (chosen[:, None] * group + np.arange(group)[None, :]).reshape(-1)
        rows = rows[rows < K]
        groups_of_rows = rows // group
    n_axis = ct.dims.index("N")
    align = p.values if ct.packed_dim == n_axis else 1
    cols = N if deep else _sampled_columns(N, rows.size, align)
    if cols < N:  # leading output columns only: a slice of each row, never a copy of the tensor
        keep = -(-cols // p.values) * p.words if ct.packed_dim == n_axis else cols
        words = words[(slice(None),) * n_axis + (slice(0, keep),)]
    if ct.packed_dim == k_axis:  # K is packed: read whole blocks that hold the rows
        blk = np.unique(rows // p.values)
        word_idx = (blk[:, None] * p.words + np.arange(p.words)[None, :]).reshape(-1)
        sub = words[(slice(None),) * k_axis + (word_idx,)]  # (np.take would first copy a sliced view whole)
        vals = unpack(sub, p, axis=k_axis)
        logical_rows = (blk[:, None] * p.values + np.arange(p.values)[None, :]).reshape(-1)
        pos = np.searchsorted(logical_rows, rows)
        vals = np.take(vals, pos, axis=k_axis)
    else:
        sub = words[(slice(None),) * k_axis + (rows,)]
        vals = unpack(sub, p, axis=ct.packed_dim, length=cols) if ct.packed_dim is not None else sub
    codes = vals.T if ct.transposed else vals
    return codes, groups_of_rows


def _order_findings(ckpt, module, fit: Fit, codes, rows_groups, err, stats) -> list[Finding]:
    """Per (group, column) the median code sits at the zero point when qweight and qzeros use the same field order.
    Compare the stored order of qzeros with every other order a spec defines at this width."""
    spec, b = fit.spec, fit.bits
    zt = spec.tensor("zeros")
    if zt.packed_dim is None:
        return []  # unpacked zeros have no field order to get wrong
    words, _ = _read(ckpt, module, zt.name)
    base = spec.packing(b)
    orders = {base.order}
    for other in all_specs().values():
        if b in other.bits:
            op = other.packing(b)
            if (op.values, op.words) == (base.values, base.words):
                orders.add(op.order)
    n_g = _shape_facts(spec, fit.K, fit.N, fit.G, b)[0]["n_g"]
    groups = np.unique(rows_groups)
    cols = codes.shape[1]
    medians = _group_medians(codes, rows_groups, groups, b)
    agreement = {}
    for order in orders:
        p = Packing(base.bits, base.values, base.words, order)
        z = _sampled_zero_fields(words, zt, p, groups, cols, n_g).astype(np.int64) - spec.zero_offset
        agreement[order] = float(np.mean(np.abs(medians - z) <= 1) * 100)
    stored = agreement[base.order]
    stats[module.prefix] = {"median_at_zero_pct": round(stored, 2), "groups_sampled": int(groups.size), "columns_sampled": int(cols)}
    best_order, best = max(agreement.items(), key=lambda kv: kv[1])
    if best_order != base.order and best >= stored + ORDER_MARGIN and len(np.unique(z)) > 1:
        name = {o: s.name for s in all_specs().values() for bb in s.bits for o in [s.packing(bb).order] if bb == b}
        err("order.zeros-vs-weights",
            f"qzeros and qweight disagree on the field order: the median code of a group sits at its zero point in {stored:.1f}% of cells "
            f"with qzeros read in the stored order {list(base.order)}, but {best:.1f}% with order {list(best_order)}",
            hint=f"one of the two tensors was packed in the wrong order (e.g. qzeros natural while qweight is AWQ-interleaved); "
                 f"repack qzeros in order {list(base.order)}", tensor=zt.name,
            stored_order_pct=round(stored, 2), best_order=list(best_order), best_order_pct=round(best, 2))
    return []


# ---- --deep: decode -> encode must give back the stored bytes ------------------------------------------------

def _order_sample(modules: dict[str, QuantModule]) -> set[str]:
    """Prefixes of the modules whose pack order the default check samples: all of them, except that of more than
    SAMPLE_MODULES_PER_SHAPE modules with one layout and shape, that many evenly spread ones."""
    by_shape: dict[tuple, list[str]] = {}
    for m in modules.values():
        if m.chosen is not None:
            f = m.chosen
            by_shape.setdefault((f.spec.name, f.bits, f.K, f.N, f.G), []).append(m.prefix)
    out: set[str] = set()
    for prefixes in by_shape.values():
        if len(prefixes) > SAMPLE_MODULES_PER_SHAPE:
            prefixes = [prefixes[i] for i in np.unique(np.linspace(0, len(prefixes) - 1, SAMPLE_MODULES_PER_SHAPE).astype(int))]
        out.update(prefixes)
    return out


def _sampled_columns(N: int, rows: int, align: int) -> int:
    """How many leading output columns of `rows` sampled rows fit in SAMPLE_CODES (whole packed words, >= one word)."""
    if rows * N <= SAMPLE_CODES:
        return N
    return min(N, max(align, SAMPLE_CODES // max(rows, 1) // align * align))


def _group_medians(codes: np.ndarray, rows_groups: np.ndarray, groups: np.ndarray, bits: int) -> np.ndarray:
    """np.median over the rows of each (group, column) cell, exactly, from one histogram of the small integer codes
    (a bincount instead of a partition per group: the two middle values are where the cumulative count crosses)."""
    levels = max(1 << bits, int(codes.max()) + 1 if codes.size else 1)
    cols = codes.shape[1]
    first_bin = np.searchsorted(groups, rows_groups).astype(np.intp) * (cols * levels)  # of each row's cell, column 0
    idx = first_bin[:, None] + np.arange(0, cols * levels, levels, dtype=np.intp)[None, :]  # one index array, added to in place
    idx += codes
    hist = np.bincount(idx.ravel(), minlength=groups.size * cols * levels).reshape(groups.size, cols, levels)
    cum = np.cumsum(hist, axis=2)
    n = cum[:, :, -1:]  # rows in the cell
    lo = np.count_nonzero(cum < (n + 1) // 2, axis=2)  # value at sorted index (n - 1) // 2
    hi = np.count_nonzero(cum < n // 2 + 1, axis=2)  # value at sorted index n // 2
    return (lo + hi) / 2


def _sampled_zero_fields(words: np.ndarray, zt, p: Packing, groups: np.ndarray, cols: int, n_g: int) -> np.ndarray:
    """Zero fields [groups, cols] read in field order `p`, unpacking only the sampled groups over the leading columns."""
    w = np.asarray(words)
    g_axis, n_axis = zt.dims.index("n_g"), zt.dims.index("N")
    if zt.packed_dim == n_axis:
        w = np.take(w, groups, axis=g_axis)
        w = w[(slice(None),) * n_axis + (slice(0, -(-cols // p.values) * p.words),)]
        z = unpack(w, p, axis=n_axis, length=cols)
        return z.T if zt.transposed else z
    z = unpack(w, p, axis=zt.packed_dim, length=n_g)
    return (z.T if zt.transposed else z)[groups, :cols]


_SHAPE_FACTS: dict[tuple, tuple[dict, list]] = {}


def _shape_facts(spec: LayoutSpec, K: int, N: int, G: int, b: int) -> tuple[dict, list]:
    """(dims_env, invariants broken) of one layout and shape, evaluated once: a 100k-tensor checkpoint has a few
    shapes but tens of thousands of modules. Callers must not modify the returned env."""
    key = (spec.name, spec.invariants, K, N, G, b)
    facts = _SHAPE_FACTS.get(key)
    if facts is None:
        env = spec.dims_env(K, N, G, b)
        failed = []
        for inv in spec.invariants:
            try:
                holds = bool(evaluate(inv.expr, env))
            except Exception:  # noqa: BLE001 - a spec formula that cannot be evaluated here is itself reported
                holds = False
            if not holds:
                failed.append(inv)
        if len(_SHAPE_FACTS) > 4096:
            _SHAPE_FACTS.clear()
        facts = _SHAPE_FACTS[key] = (env, failed)
    return facts


# positive finite floats are exactly the raw bit patterns 1 .. largest finite (sign 0, exponent not all ones, not 0)
_POSITIVE_FINITE = {"F16": (np.uint16, 0x7BFF), "BF16": (np.uint16, 0x7F7F), "F32": (np.uint32, 0x7F7FFFFF)}


def _all_positive_finite(values: np.ndarray, name: str) -> bool:
    """One min and one max over the raw bits of the memmap (no temporaries): the common clean case costs two
    streaming passes; only a tensor that fails gets the per-rule masks."""
    if name not in _POSITIVE_FINITE:
        return False
    udt, top = _POSITIVE_FINITE[name]
    raw = np.asarray(values).view(udt)
    return raw.size == 0 or (int(raw.min()) >= 1 and int(raw.max()) <= top)


def _roundtrip_findings(ckpt, module, fit: Fit, err) -> list[Finding]:
    """Decode the whole module to its logical form and encode it again in the same layout. The packed fields
    decode and encode exactly, so any byte that differs in a packed tensor sits in bits no field covers
    (padding past K or N, the 2 spare bits of a 10-in-32 word): nonzero there means the file was not written
    by the layout's packer. A difference in any other tensor is a round-trip failure."""
    spec = fit.spec
    stored = {short: np.asarray(ckpt.array(full)) for short, full in module.tensors.items()}
    kinds = {short: ckpt.entry(full).dtype for short, full in module.tensors.items()}
    try:
        logical = decode(spec, stored, kinds, fit.bits, fit.G)
        encoded = encode(spec, logical)
    except (DecodeError, RepresentationError) as exc:
        err("values.roundtrip", f"the module does not survive decode -> encode in {spec.name}: {exc}",
            hint="the stored values are outside what the layout can hold", tensor=getattr(exc, "tensor", None) or spec.tensor("codes").name,
            cause=exc.code)
        return []
    by_name = {t.name: t for t in spec.tensors}
    for short, (array, dtype) in encoded.items():
        if short not in stored:
            continue
        t = by_name.get(short)
        have = stored[short]
        if t is not None and t.packed_dim is not None:
            a, b_ = have.reshape(-1).view(np.uint32), np.ascontiguousarray(array).reshape(-1).view(np.uint32)
            diff = np.nonzero(a != b_)[0]
            if diff.size:
                i = int(diff[0])
                err("values.padding-nonzero",
                    f"{diff.size} word(s) have bits set outside every field (first: word {i} is {int(a[i]):#010x}, its fields alone give {int(b_[i]):#010x})",
                    hint="unused bits must be zero: some readers mask them, others add them to a field; re-pack the tensor",
                    tensor=short, words=int(diff.size), first_word=i)
        elif have.shape != array.shape or not np.array_equal(have, array):
            err("values.roundtrip", f"{short} changes on decode -> encode in {spec.name}",
                hint="please report this checkpoint: awqfmt's decoder and encoder disagree on it", tensor=short)
    return []


# ---- modules_to_not_convert ----------------------------------------------------------------------------

def _ignore_list_findings(ckpt, modules, unquantized) -> list[Finding]:
    out = []
    ignore = ckpt.config.get("modules_to_not_convert") or []
    matchers = []
    for pattern in ignore:
        match = _ignore_matcher(pattern)
        if match is None:
            out.append(info("config.ignore-pattern-skipped", f"ignore pattern {pattern[:80]!r} uses regex features awqfmt does not evaluate",
                            hint="awqfmt evaluates literal names and 're:' patterns made of literals, '.' and '.*' (never an arbitrary regex "
                                 "from a downloaded file); modules it would match were not checked against it", file=_cfg_file(ckpt.config)))
        else:
            matchers.append((pattern, match))
    for prefix, module in modules.items():
        for pattern, match in matchers:
            if match(prefix):
                out.append(warning("config.ignored-but-quantized", f"module is quantized but listed in modules_to_not_convert/ignore ({pattern!r})",
                                   hint="loaders will build a dense layer and fail to load its packed tensors", file=ckpt.file_of(next(iter(module.tensors.values()))),
                                   module=prefix))
                break
    return out


_REGEX_META = re.compile(r"[\[\](){}+?|^$\\]")


def _ignore_matcher(pattern: str):
    """A predicate on module names for one ignore entry, or None when awqfmt will not evaluate it.

    Literal names match the module, a suffix after a dot or a prefix before one. compressed-tensors' 're:'
    entries are regexes from a stranger's file; a crafted one (nested quantifiers) backtracks for hours, so only
    the subset real configs use is accepted: literals, escaped dots, '.' (any char), '.*', an optional '^'/'$'.
    It is translated to a glob and matched with fnmatch (linear time, no backtracking blow-up)."""
    if not pattern:
        return None
    if not pattern.startswith("re:"):
        return lambda p: p == pattern or p.endswith("." + pattern) or p.startswith(pattern + ".")
    body = pattern[3:]
    if len(body) > 512:
        return None
    body = body[1:] if body.startswith("^") else body  # re.match anchors at the start anyway
    anchored_end = body.endswith("$") and not body.endswith("\\$")
    body = body[:-1] if anchored_end else body
    glob, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in ".-_/":
            glob.append(body[i + 1])
            i += 2
        elif body.startswith(".*", i):
            glob.append("*")
            i += 2
        elif c == ".":
            glob.append("?")
            i += 1
        elif _REGEX_META.match(c) or c in "*":
            return None
        else:
            glob.append(c)
            i += 1
    translated = "".join(glob) + ("" if anchored_end else "*")
    return lambda p: fnmatch.fnmatchcase(p, translated)
