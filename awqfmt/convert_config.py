"""What `awqfmt convert` writes besides tensors: config.json (and quantize_config.json) as the target's own tools
write them, rendered from the spec's `config.write` template, and the non-weight files copied from SRC."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

from .checkpoint import PICKLE_SUFFIXES, Checkpoint
from .convert_engine import DENSE_TORCH_DTYPE, Target
from .quant_config import CONFIG_FILES
from .spec import SpecError


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


def side_files(src_dir: Path, src_is_dir: bool) -> tuple[list[Path], list[str]]:
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
