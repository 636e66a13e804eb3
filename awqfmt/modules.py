"""Group a checkpoint's tensors into quantized modules and work out each module's layout from its tensors.

A module is a tensor-name prefix carrying the tensors of some layout spec (`qweight`/`qzeros`/`scales`,
`weight_packed`/`weight_scale`, ...). Which spec, which bit width and which K, N, G fit is decided by the spec's
shape formulas; the config breaks ties that shapes cannot (AWQ vs its natural-order twin, GPTQ v1 vs v2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .findings import Finding, error
from .logical import infer_dims
from .name_patterns import is_class_target, name_matcher
from .quant_config import QuantConfig
from .spec import LayoutSpec, SpecError, all_specs


@dataclass
class Fit:
    spec: LayoutSpec
    bits: int
    K: int
    N: int
    G: int


@dataclass
class QuantModule:
    prefix: str
    tensors: dict[str, str] = field(default_factory=dict)  # short name -> full tensor name
    fits: list[Fit] = field(default_factory=list)  # every (layout, bits) whose shape formulas the tensors satisfy
    family: list[LayoutSpec] = field(default_factory=list)  # specs whose tensor names match
    chosen: Fit | None = None
    expected: tuple[int | None, int | None] = (None, None)  # (bits, group_size) the config asks of this module

    @property
    def name(self) -> str:
        return self.prefix


def quant_tensor_names() -> set[str]:
    names = set()
    for spec in all_specs().values():
        names |= {t.name for t in spec.tensors if t.role not in ("bias",)}
    return names


def group_modules(ckpt: Checkpoint) -> tuple[dict[str, QuantModule], list[str]]:
    """-> (modules by prefix, names of tensors that belong to no quantized module)."""
    known = quant_tensor_names()
    modules: dict[str, QuantModule] = {}
    rest: list[str] = []
    for name in ckpt.locations:
        prefix, _, short = name.rpartition(".")
        if short in known and prefix:
            module = modules.get(prefix)
            if module is None:  # (not setdefault: that builds a QuantModule per tensor)
                module = modules[prefix] = QuantModule(prefix)
            module.tensors[short] = name
        else:
            rest.append(name)
    unquantized = []
    for name in rest:
        prefix, _, short = name.rpartition(".")
        if prefix in modules and short == "bias":
            modules[prefix].tensors["bias"] = name
        else:
            unquantized.append(name)
    return modules, unquantized


class _Shape:
    def __init__(self, ckpt: Checkpoint, full: str):
        self._ckpt, self._full = ckpt, full
        self.shape = ckpt.entry(full).shape

    def values(self):
        return self._ckpt.array(self._full).reshape(-1)


def fit_module(ckpt: Checkpoint, module: QuantModule, cfg_bits: int | None, cfg_group: int | None) -> None:
    """Fill `module.family` and `module.fits` by evaluating every candidate spec's shape formulas."""
    present = set(module.tensors)
    for spec in all_specs().values():
        if not spec.required_names <= present:
            continue
        if present - set(spec.tensor_names):
            continue
        module.family.append(spec)
        view = {short: _Shape(ckpt, full) for short, full in module.tensors.items()}
        for bits in ([cfg_bits] if cfg_bits in spec.bits else spec.bits):
            try:
                K, N = infer_dims(spec, view, bits)  # type: ignore[arg-type]
            except (SpecError, IndexError, KeyError, ValueError, ArithmeticError):  # values of a hostile weight_shape (inf, NaN)
                continue
            if K <= 0 or N <= 0:
                continue
            st = spec.tensor("scales")
            n_g_axis = st.dims.index("n_g")
            n_g = view[st.name].shape[n_g_axis] if len(view[st.name].shape) == len(st.dims) else -1
            groups = [cfg_group] if cfg_group is not None else []
            if n_g > 0:
                groups.append(-1 if n_g == 1 else (K // n_g if K % n_g == 0 else -(-K // n_g)))
            for G in dict.fromkeys(groups):
                if G == 0:
                    continue
                try:
                    ok = all(
                        tuple(view[t.name].shape) == spec.expected_shape(t, K, N, G, bits)
                        for t in spec.tensors if t.name in view and t.role != "shape"
                    )
                except (SpecError, ZeroDivisionError):
                    ok = False
                if ok:
                    module.fits.append(Fit(spec, bits, K, N, G))
                    break


def choose_layout(module: QuantModule, config_layouts: list[LayoutSpec]) -> Fit | None:
    """Prefer a fit whose layout the config names; else the first fit in spec order awq > gptq > others."""
    if not module.fits:
        return None
    for fit in module.fits:
        if fit.spec in config_layouts:
            return fit
    preference = ["awq", "gptq", "compressed-tensors", "gptq-v2", "logical"]
    return sorted(module.fits, key=lambda f: preference.index(f.spec.name) if f.spec.name in preference else 99)[0]


def config_expectations(cfg: QuantConfig, modules: dict[str, QuantModule]) -> tuple[dict[str, tuple], list[Finding]]:
    """(bits, group_size) the config expects of each module. compressed-tensors' config groups target modules by
    name ("lm_head", "re:.*mlp.*") or by class ("Linear"); a name match wins over a class match, as in the peers'
    matching. With one scheme for all groups the global values hold. A quantized module no group targets is an error:
    loaders would not know how to build it."""
    cfg_bits = cfg.get("bits") if isinstance(cfg.get("bits"), int) else None
    cfg_group = cfg.get("group_size") if isinstance(cfg.get("group_size"), int) else None
    expected = {prefix: (cfg_bits, cfg_group) for prefix in modules}
    out: list[Finding] = []
    if not cfg.groups:
        return expected, out
    compiled = [(g, [name_matcher(t) for t in g.targets if not is_class_target(t)], any(is_class_target(t) for t in g.targets))
                for g in cfg.groups]
    for prefix in modules:
        group = next((g for g, named, _ in compiled if any(m is not None and m(prefix) for m in named)), None)
        group = group or next((g for g, _, by_class in compiled if by_class), None)
        if group is None:
            out.append(error("config.module-untargeted", f"quantized module is targeted by no config group ({', '.join(g.name for g in cfg.groups)})",
                             hint="add its name or class to a group's targets, or list it in ignore and store it dense",
                             file=cfg.files[0] if cfg.files else None, module=prefix))
        elif cfg.mixed:
            expected[prefix] = (group.bits, group.group_size)
    return expected, out


def fit_modules(ckpt: Checkpoint, modules: dict[str, QuantModule]) -> list[Finding]:
    """Fit and choose the layout of every module: bits / group size the config expects of it (per module, for
    mixed-precision config groups), each distinct shape evaluated once (100k-tensor checkpoints have few shapes).
    When the config's bits / group size fit nothing, the module is fitted from its shapes alone, so that `check`
    can say "tensors are 8-bit, config says 4" and the data stay readable. Returns the config-group findings."""
    expected, findings = config_expectations(ckpt.config, modules)
    config_layouts = ckpt.config.matching_layouts()
    cache: dict[tuple, tuple[list, list]] = {}
    for module in modules.values():
        exp_bits, exp_group = expected[module.prefix]
        key = None if "weight_shape" in module.tensors else (  # compressed-tensors' fit depends on that tensor's values
            tuple(sorted((short, ckpt.entry(full).shape) for short, full in module.tensors.items())), exp_bits, exp_group)
        if key is not None and key in cache:
            module.fits, module.family = cache[key]
        else:
            fit_module(ckpt, module, exp_bits, exp_group)
            if not module.fits and module.family and (exp_bits is not None or exp_group is not None):
                module.fits, module.family = [], []
                fit_module(ckpt, module, None, None)
            if key is not None:
                cache[key] = (module.fits, module.family)
        module.expected = (exp_bits, exp_group)
        module.chosen = choose_layout(module, config_layouts)
    return findings
