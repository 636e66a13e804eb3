"""`awqfmt check`: apply the named rules of specs/RULES.md to a checkpoint and collect findings.

Default mode reads headers, configs and the small tensors (scales, zeros, g_idx) fully and samples qweight
(a few groups per module); `deep=True` reads every packed word. Rules never raise on bad data: each defect
becomes a `Finding` naming file, module, tensor and rule.
"""

from __future__ import annotations

import gc
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .checkpoint import Checkpoint, open_checkpoint
from .findings import Finding, error, sort_findings, warning
from .modules import QuantModule, fit_modules, group_modules
from .rules.common import shape_facts
from .rules.ignore_list import ignore_list_findings
from .rules.pack_order import order_sample
from .rules.roundtrip import roundtrip_findings
from .rules.values import value_findings
from .spec import all_specs

# What loaders assume when a config leaves a field out (transformers AwqConfig / GPTQConfig, AutoGPTQ
# BaseQuantizeConfig): a missing field is only harmless when the tensors happen to match the default.
LOADER_DEFAULTS = {"bits": 4, "group_size": 128}


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


def check_path(path: str | Path, deep: bool = False, progress: Callable[[int, int], None] | None = None) -> CheckResult:
    with _cyclic_gc_paused():
        ckpt = open_checkpoint(path)
        try:
            return check_checkpoint(ckpt, deep=deep, progress=progress)
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


def check_checkpoint(ckpt: Checkpoint, deep: bool = False, progress: Callable[[int, int], None] | None = None) -> CheckResult:
    """Every rule over an open checkpoint; `progress(done, total)` is called after each module."""
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
    findings += fit_modules(ckpt, modules)
    chosen = Counter(m.chosen.spec.name for m in modules.values() if m.chosen)
    detected = chosen.most_common(1)[0][0] if chosen else None
    findings += _layout_findings(ckpt, modules, config_layouts, detected)
    findings += _missing_field_findings(cfg, config_layouts, modules)
    sampled = None if deep else order_sample(modules)
    for done, module in enumerate(modules.values(), 1):
        findings += _module_findings(ckpt, module, cfg, config_layouts, deep, stats, module.expected,
                                     sample_order=sampled is None or module.prefix in sampled)
        if progress is not None:
            progress(done, len(modules))
    findings += ignore_list_findings(ckpt, modules, unquantized)
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


def _module_findings(ckpt: Checkpoint, module: QuantModule, cfg, config_layouts, deep: bool, stats: dict, expect: tuple[int | None, int | None],
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
            + (f" (config: bits={expect[0]}, group_size={expect[1]})" if cfg.present else ""),
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
    env, failed_invariants = shape_facts(spec, K, N, G, b)  # evaluated once per layout and shape
    for inv in failed_invariants:
        err(inv.code, f"{inv.message} (K={K}, N={N}, group_size={G}, bits={b})", hint="such a module cannot be packed by this layout's tools",
            tensor=spec.tensor("codes").name)
    # config consistency
    exp_bits, exp_group = expect
    if exp_bits is not None and exp_bits != b:
        err("module.config-bits", f"tensors fit {b}-bit {spec.name}, config says bits={exp_bits}",
            hint="fix bits in the config", tensor=spec.tensor("codes").name)
    if exp_group is not None and exp_group != G and not (G == -1 and exp_group == K):
        err("module.config-group", f"scales have {env['n_g']} groups over K={K} (group_size {G}); config says group_size={exp_group}",
            hint="a group_size mismatch makes loaders mis-shape qzeros/scales (text-generation-webui#541)", tensor=spec.tensor("scales").name)
    if set(wrong_dtype) & {"codes", "zeros", "scales", "g_idx"}:
        return out  # values stored in a dtype the layout does not define cannot be read as that layout's fields
    out += value_findings(ckpt, module, fit, cfg, deep, stats, err, warn, sample_order)
    if deep:
        out += roundtrip_findings(ckpt, module, fit, err)
    return out


