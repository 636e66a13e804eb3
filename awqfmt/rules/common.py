"""Helpers shared by the rules: a module's stored tensor, and the facts of one layout and shape."""

from __future__ import annotations

import numpy as np

from ..checkpoint import Checkpoint
from ..modules import QuantModule
from ..spec import LayoutSpec, evaluate

_SHAPE_FACTS: dict[tuple, tuple[dict, list]] = {}


def shape_facts(spec: LayoutSpec, K: int, N: int, G: int, b: int) -> tuple[dict, list]:
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


def read_tensor(ckpt: Checkpoint, module: QuantModule, short: str) -> tuple[np.ndarray, str]:
    full = module.tensors[short]
    return ckpt.array(full), ckpt.entry(full).dtype
