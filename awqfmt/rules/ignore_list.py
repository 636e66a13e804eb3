"""modules_to_not_convert / ignore: a quantized module the config says to leave dense."""

from __future__ import annotations

import fnmatch
import re

from ..findings import Finding, info, warning


def ignore_list_findings(ckpt, modules, unquantized) -> list[Finding]:
    out = []
    ignore = ckpt.config.get("modules_to_not_convert") or []
    matchers = []
    for pattern in ignore:
        match = _ignore_matcher(pattern)
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
