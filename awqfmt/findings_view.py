"""Print findings for people: worst first, grouped by rule, each with where (file > module > tensor), the message
and the hint. One renderer for check, convert and verify, so every command reads the same way.

Names come from a stranger's checkpoint: control characters are shown as escapes and markup is escaped, so a
tensor name cannot recolour, move the cursor or reorder the report on the user's terminal.
"""

from __future__ import annotations

from typing import Iterable

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from .findings import Finding

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# C0/C1 control characters (ESC starts terminal escape sequences) and bidi overrides
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def printable(text: str) -> str:
    return text.translate(_UNPRINTABLE)


def safe(text: str) -> str:
    """Untrusted text for rich markup: control characters shown as escapes, markup brackets escaped."""
    return escape(printable(text))


def rules_table(findings: list[Finding]) -> Table:
    """One row per rule hit, in the order of the (worst-first) findings, with its count."""
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    table = Table(title="Rules hit", show_edge=False)
    for col in ("severity", "rule", "findings"):
        table.add_column(col)
    seen: set[str] = set()
    for f in findings:
        if f.code not in seen:
            seen.add(f.code)
            table.add_row(Text(f.severity.value, style=STYLE[f.severity.value]), f.code, str(counts[f.code]))
    return table


def render_findings(findings: Iterable[Finding], console: Console, per_rule: int = 5) -> None:
    """Each finding as a short block; after `per_rule` of one rule, a line saying how many more --json lists."""
    findings = list(findings)
    counts: dict[str, int] = {}
    for f in findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    shown: dict[str, int] = {}
    for f in findings:
        shown[f.code] = shown.get(f.code, 0) + 1
        if shown[f.code] > per_rule:
            continue
        tensor = f.tensor[len(f.module) + 1:] if f.tensor and f.module and f.tensor.startswith(f.module + ".") else f.tensor
        where = " > ".join(safe(x) for x in (f.file, f.module, tensor) if x)
        console.print(Text.assemble((f"{f.severity.value:<7} ", STYLE[f.severity.value]), (f.code, "bold")), markup=False)
        if where:
            console.print(f"        [dim]at[/dim] {where}")
        console.print(Text("        " + printable(f.message)))
        if f.hint:
            console.print(Text("        hint: " + printable(f.hint), style="dim"))
        if shown[f.code] == per_rule and counts[f.code] > per_rule:
            console.print(f"        [dim]... {counts[f.code] - per_rule} more {f.code} finding(s); --json lists all[/dim]")
