"""Group a checkpoint's tensors into quantized modules and work out each module's layout from its tensors.

A module is a tensor-name prefix carrying the tensors of some layout spec (`qweight`/`qzeros`/`scales`,
`weight_packed`/`weight_scale`, ...). Which spec, which bit width and which K, N, G fit is decided by the spec's
shape formulas; the config breaks ties that shapes cannot (AWQ vs its natural-order twin, GPTQ v1 vs v2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .checkpoint import Checkpoint
from .logical import infer_dims
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
