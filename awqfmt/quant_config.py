"""Find and normalise a checkpoint's quantization config.

Sources, in the order loaders trust them: `config.json` -> `quantization_config` (transformers, vLLM),
`quantize_config.json` (AutoGPTQ), `quant_config.json` (AutoAWQ). Field names and synonyms (`w_bit`/`bits`,
`q_group_size`/`group_size`, compressed-tensors' nested `config_groups.*.weights.num_bits`) and allowed values
come from `specs/config.json`. Wrong types and disagreeing files are findings, never exceptions.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .findings import Finding, error, info
from .spec import LayoutSpec, all_specs, config_fields

CONFIG_FILES = ("config.json", "quantize_config.json", "quant_config.json")
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_GROUP_SIZE = 1 << 31  # far beyond any in_features; keeps index arithmetic inside int64


@dataclass(frozen=True)
class ConfigGroup:
    """One compressed-tensors config group: which modules it targets and how their weights are quantized."""

    name: str
    targets: tuple[str, ...]
    bits: int | None
    group_size: int | None  # -1: one group over K (channel strategy)


@dataclass
class QuantConfig:
    values: dict[str, Any] = field(default_factory=dict)  # normalised field -> value
    sources: dict[str, str] = field(default_factory=dict)  # normalised field -> file it came from
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    model_config: dict | None = None
    invalid: set[str] = field(default_factory=set)  # normalised fields present in some file but with a wrong type/value
    groups: list[ConfigGroup] = field(default_factory=list)  # compressed-tensors config_groups, in file order

    @property
    def mixed(self) -> bool:
        """Config groups that quantize modules differently (mixed precision): expectations are per module."""
        return len({(g.bits, g.group_size) for g in self.groups}) > 1

    def get(self, name: str, default=None):
        return self.values.get(name, default)

    @property
    def present(self) -> bool:
        return bool(self.values)

    def matching_layouts(self) -> list[LayoutSpec]:
        """Specs whose `config.match` this config satisfies (usually one)."""
        out = []
        for spec in all_specs().values():
            match = spec.config.get("match", {})
            ok = True
            for key, allowed in match.items():
                v = self.values.get(key)
                v = v.lower() if isinstance(v, str) else v
                if v not in allowed:
                    ok = False
                    break
            if ok and match:
                out.append(spec)
        return out


def _lookup(obj: Any, path: str) -> list[Any]:
    """Values at a dotted path; `*` matches every key of a mapping."""
    nodes = [obj]
    for part in path.split("."):
        nxt = []
        for node in nodes:
            if not isinstance(node, dict):
                continue
            if part == "*":
                nxt.extend(node.values())
            elif part in node:
                nxt.append(node[part])
        nodes = nxt
    return nodes


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "int":
        return type(value) is int
    if kind == "bool":
        return type(value) is bool
    if kind == "str":
        return isinstance(value, str)
    if kind == "str_or_null":
        return value is None or isinstance(value, str)
    if kind == "list_or_null":
        return value is None or (isinstance(value, list) and all(isinstance(x, str) for x in value))
    return True


def _normalise(raw: dict, fname: str, findings: list[Finding], invalid: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fname_norm, spec in config_fields().items():
        for key in spec["keys"]:
            found = _lookup(raw, key)
            if not found:
                continue
            invalid.add(fname_norm)  # until the value passes every test below
            if fname_norm == "group_size" and key.startswith("config_groups"):
                # compressed-tensors writes group_size null for per-channel strategies: one group over K
                found = [-1 if v is None else v for v in found]
            value = found[0]
            if any(v != value for v in found[1:]):
                findings.append(info("config.mixed-groups", f"{key} differs between config groups: {found}",
                                     hint="mixed precision: each module is checked against the config group whose targets name it",
                                     file=fname))
            if isinstance(value, float) and not math.isfinite(value):
                findings.append(error("config.bad-value", f"{key} is {value}", hint="set a finite value", file=fname))
                break
            if not _type_ok(value, spec["type"]):
                findings.append(error("config.bad-type", f"{key} is {json.dumps(value)[:60]} ({type(value).__name__}); expected {spec['type']}",
                                      hint=f"write {key} as a JSON {spec['type'].replace('_or_null', ' or null')} (loaders compare types strictly)",
                                      file=fname))
                break
            allowed = spec.get("allowed")
            v_cmp = value.lower() if isinstance(value, str) else value
            if fname_norm == "quant_method" and v_cmp not in allowed:
                findings.append(error("config.unknown-quant-method", f"quant_method {json.dumps(value)[:60]} is not a layout awqfmt knows ({', '.join(allowed)})",
                                      hint="awqfmt checks AWQ, GPTQ and compressed-tensors pack-quantized checkpoints; for other methods use their own tools",
                                      file=fname))
                break
            if allowed is not None and value is not None and v_cmp not in allowed:
                findings.append(error("config.bad-value", f"{key} = {json.dumps(value)} is not one of {allowed}",
                                      hint="fix the config value", file=fname))
                break
            if fname_norm == "group_size" and value is not None and not (value == -1 or 0 < value <= MAX_GROUP_SIZE):
                findings.append(error("config.bad-value", f"{key} = {str(value)[:40]}; must be -1 (one group) or in 1..{MAX_GROUP_SIZE}",
                                      hint="fix the config value", file=fname))
                break
            out[fname_norm] = v_cmp if fname_norm in ("quant_method", "version", "checkpoint_format", "format") else value
            invalid.discard(fname_norm)
            break
    return out


def _read_json(path: Path, findings: list[Finding]) -> dict | None:
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            findings.append(error("config.too-large", f"{path.name} is larger than {MAX_CONFIG_BYTES >> 20} MiB", file=path.name))
            return None
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        findings.append(error("config.unreadable", f"{path.name} is not valid JSON: {str(exc)[:120]}",
                              hint="fix or remove the file", file=path.name))
        return None
    if not isinstance(obj, dict):
        findings.append(error("config.unreadable", f"{path.name} holds a {type(obj).__name__}, not a JSON object", file=path.name))
        return None
    return obj


def load_quant_config(directory: Path) -> QuantConfig:
    qc = QuantConfig()
    per_file: list[tuple[str, dict]] = []
    for name in CONFIG_FILES:
        path = directory / name
        if not path.is_file():
            continue
        obj = _read_json(path, qc.findings)
        if obj is None:
            continue
        if name == "config.json":
            qc.model_config = obj
            obj = obj.get("quantization_config")
            if obj is None:
                continue
            if not isinstance(obj, dict):
                qc.findings.append(error("config.bad-type", "config.json quantization_config is not an object", file=name))
                continue
        qc.files.append(name)
        per_file.append((name, _normalise(obj, name, qc.findings, qc.invalid)))
        if not qc.groups:
            qc.groups = _config_groups(obj)
    for name, values in per_file:
        for key, value in values.items():
            if key not in qc.values:
                qc.values[key] = value
                qc.sources[key] = name
            elif qc.values[key] != value:
                qc.findings.append(error(
                    "config.conflict",
                    f"{key} is {json.dumps(qc.values[key])} in {qc.sources[key]} but {json.dumps(value)} in {name}",
                    hint="loaders disagree on which file wins (transformers/vLLM read config.json, AutoGPTQ quantize_config.json): make them agree",
                    file=name))
    return qc


def _config_groups(obj: dict) -> list[ConfigGroup]:
    """compressed-tensors `config_groups`; malformed entries are skipped (the field rules report their types)."""
    groups = obj.get("config_groups")
    if not isinstance(groups, dict):
        return []
    out = []
    for name, g in groups.items():
        if not isinstance(g, dict) or not isinstance(g.get("weights"), dict):
            continue
        targets = g.get("targets")
        targets = tuple(t for t in targets if isinstance(t, str)) if isinstance(targets, list) else ()
        w = g["weights"]
        bits = w.get("num_bits") if type(w.get("num_bits")) is int else None
        gs = w.get("group_size")
        group_size = -1 if gs is None else gs if type(gs) is int else None
        out.append(ConfigGroup(str(name), targets, bits, group_size))
    return out
