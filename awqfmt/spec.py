"""Load the layout specs (`specs/*.json`) and evaluate their shape formulas.

The JSON files are the single source of truth for every layout fact: tensor names and roles, shape formulas,
dtypes, packing axis, field width, field order inside a word, zero-point storage and config keys. Nothing in
Python repeats a shape formula; code asks a `LayoutSpec`.
"""

from __future__ import annotations

import ast
import json
import math
import operator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

SPEC_DIR = Path(__file__).resolve().parent / "specs"


class SpecError(ValueError):
    """A spec file is malformed (a bug in awqfmt's data, not in the user's checkpoint)."""


@dataclass(frozen=True)
class Packing:
    """How fields sit in words for one bit width: a block of words and the order of fields inside it.

    `order[i]` is the logical index (within the block) of the i-th field counted from the least significant bit.
    """

    bits: int
    values: int
    words: int
    order: tuple[int, ...]

    @property
    def natural(self) -> bool:
        return self.order == tuple(range(self.values))

    @property
    def inverse_order(self) -> tuple[int, ...]:
        inv = [0] * self.values
        for pos, logical in enumerate(self.order):
            inv[logical] = pos
        return tuple(inv)

    def packed_len(self, n: int) -> int:
        return -(-n // self.values) * self.words

    def unpacked_len(self, n_words: int) -> int:
        return n_words // self.words * self.values


@dataclass(frozen=True)
class TensorSpec:
    name: str
    role: str  # codes | zeros | scales | g_idx | bias | shape
    dims: tuple[str, ...]
    shape: tuple[Any, ...]
    dtypes: tuple[str, ...]
    packed_dim: int | None = None
    optional: bool = False

    @property
    def transposed(self) -> bool:
        """Stored [N, K] / [N, n_g] where the logical tensor is [K, N] / [n_g, N]."""
        return len(self.dims) == 2 and self.dims[0] == "N"


@dataclass(frozen=True)
class Invariant:
    expr: str
    code: str
    message: str


@dataclass(frozen=True)
class LayoutSpec:
    name: str
    title: str
    aliases: tuple[str, ...]
    bits: tuple[int, ...]
    tensors: tuple[TensorSpec, ...]
    zero_offset: int
    zeros_when_symmetric: str  # "stored" | "absent"
    zero_max: str  # formula in b: the largest zero point the layout stores (2**b - 1 unless the spec says more)
    g_idx: str  # "none" | "always" | "when-act-order": when the layout writes g_idx
    infer: Mapping[str, str]
    invariants: tuple[Invariant, ...]
    config: Mapping[str, Any]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    def packing(self, bits: int) -> Packing:
        if bits not in self.bits:
            raise KeyError(bits)
        block = self.raw.get("block", {}).get(str(bits))
        values, words = (block["values"], block["words"]) if block else (32 // bits, 1)
        order = tuple(self.raw.get("field_order", {}).get(str(bits), range(values)))
        if sorted(order) != list(range(values)):
            raise SpecError(f"{self.name}: field_order for {bits} bits is not a permutation of 0..{values - 1}")
        return Packing(bits, values, words, order)

    def tensor(self, role: str) -> TensorSpec | None:
        for t in self.tensors:
            if t.role == role:
                return t
        return None

    @property
    def packed(self) -> bool:
        """False for a layout that stores one value per element (no bit fields in words)."""
        return any(t.packed_dim is not None for t in self.tensors)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tensors)

    @property
    def required_names(self) -> frozenset[str]:
        return frozenset(t.name for t in self.tensors if not t.optional)

    def dims_env(self, K: int, N: int, G: int, bits: int) -> dict[str, int]:
        """The variables shape formulas may use."""
        group = K if G == -1 else G
        p = self.packing(bits)
        return {
            "K": K, "N": N, "G": G, "b": bits, "n_g": -(-K // group) if group > 0 else 0,
            "values_per_word": p.values // p.words if p.values % p.words == 0 else 0,
            "values_per_block": p.values, "words_per_block": p.words,
        }

    def expected_shape(self, tensor: TensorSpec, K: int, N: int, G: int, bits: int) -> tuple[int, ...]:
        env = self.dims_env(K, N, G, bits)
        p = self.packing(bits)
        return tuple(int(evaluate(str(s), env, packing=p)) for s in tensor.shape)


def _load(path: Path) -> LayoutSpec:
    raw = json.loads(path.read_text())
    try:
        tensors = tuple(
            TensorSpec(
                name=t["name"], role=t["role"], dims=tuple(t["dims"]), shape=tuple(t["shape"]),
                dtypes=tuple(t["dtypes"]), packed_dim=t.get("packed_dim"), optional=t.get("optional", False),
            )
            for t in raw["tensors"]
        )
        zp = raw["zero_point"]
        return LayoutSpec(
            name=raw["name"], title=raw["title"], aliases=tuple(raw.get("aliases", ())), bits=tuple(raw["bits"]),
            tensors=tensors, zero_offset=int(zp["offset"]), zeros_when_symmetric=zp["when_symmetric"],
            zero_max=str(zp.get("max", "2**b - 1")),
            g_idx=raw["g_idx"], infer=raw["infer"],
            invariants=tuple(Invariant(**i) for i in raw.get("invariants", ())), config=raw["config"], raw=raw,
        )
    except (KeyError, TypeError) as exc:
        raise SpecError(f"{path.name}: missing or malformed field {exc}") from exc


@lru_cache(maxsize=None)
def all_specs() -> dict[str, LayoutSpec]:
    specs = {}
    for path in sorted(SPEC_DIR.glob("*.json")):
        if path.name == "config.json":
            continue
        spec = _load(path)
        specs[spec.name] = spec
    return specs


def layout_names() -> list[str]:
    return list(all_specs())


def get_spec(name: str) -> LayoutSpec:
    """Look a layout up by name or alias (case-insensitive, `_` and `-` equivalent)."""
    key = name.lower().replace("_", "-")
    for spec in all_specs().values():
        if key == spec.name or key in (a.replace("_", "-") for a in spec.aliases):
            return spec
    raise KeyError(name)


@lru_cache(maxsize=None)
def config_fields() -> dict[str, Any]:
    return json.loads((SPEC_DIR / "config.json").read_text())["fields"]


# ---- a tiny, safe expression language for shape formulas and invariants --------------------------------

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod, ast.Div: operator.truediv, ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}


@lru_cache(maxsize=512)
def _parse(expr: str) -> ast.Expression:
    return ast.parse(expr, mode="eval")


def evaluate(expr: str, env: Mapping[str, Any], packing: Packing | None = None, tensors: Mapping[str, Any] | None = None):
    """Evaluate a spec formula. Names come from `env`; `T.shape[i]` / `T.value[i]` read `tensors[T]`
    (an object with `.shape` and, for `value`, `.values()`); `packed(x)` / `unpacked(x)` use `packing`."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) or (
            isinstance(node, ast.Constant) and node.value is None
        ):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in env:
                raise SpecError(f"unknown name {node.id!r} in formula {expr!r}")
            return env[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BoolOp):
            vals = (ev(v) for v in node.values)
            return all(vals) if isinstance(node.op, ast.And) else any(vals)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
            return _CMPOPS[type(node.ops[0])](ev(node.left), ev(node.comparators[0]))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1:
            arg = ev(node.args[0])
            if node.func.id == "ceil":
                return math.ceil(arg)
            if node.func.id in ("packed", "unpacked") and packing is not None:
                return packing.packed_len(int(arg)) if node.func.id == "packed" else packing.unpacked_len(int(arg))
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and tensors is not None:
            attr = node.value
            if isinstance(attr.value, ast.Name) and attr.attr in ("shape", "value"):
                tensor = tensors[attr.value.id]
                index = ev(node.slice)
                return tensor.shape[index] if attr.attr == "shape" else int(tensor.values()[index])
        raise SpecError(f"unsupported construct in formula {expr!r}: {ast.dump(node)[:80]}")

    return ev(_parse(expr))
