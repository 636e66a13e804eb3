"""modules_to_not_convert / ignore: a quantized module the config says to leave dense."""

from __future__ import annotations

from ..findings import Finding, info, warning
from ..name_patterns import name_matcher


def ignore_list_findings(ckpt, modules, unquantized) -> list[Finding]:
    out = []
    ignore = ckpt.config.get("modules_to_not_convert") or []
    matchers = []
    for pattern in ignore:
        match = name_matcher(pattern)
        if match is None:
            out.append(info("config.ignore-pattern-skipped", f"ignore pattern {pattern[:80]!r} uses regex features awqfmt does not evaluate",
                            hint="awqfmt evaluates literal names and 're:' patterns made of literals, '.' and '.*' (never an arbitrary regex "
                                 "from a downloaded file); modules it would match were not checked against it", file=(ckpt.config.files[0] if ckpt.config.files else None)))
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
