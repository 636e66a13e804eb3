"""Module-name patterns from configs (`ignore`, `modules_to_not_convert`, compressed-tensors `targets`), matched
without ever running a stranger's regular expression."""

from __future__ import annotations

import fnmatch
import re


def is_class_target(pattern: str) -> bool:
    """compressed-tensors targets name module classes ("Linear") or module names ("lm_head", "re:.*q_proj")."""
    return not pattern.startswith("re:") and "." not in pattern and pattern[:1].isupper()


_REGEX_META = re.compile(r"[\[\](){}+?|^$\\]")


def name_matcher(pattern: str):
    """A predicate on module names for one ignore / targets entry, or None when awqfmt will not evaluate it.

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
