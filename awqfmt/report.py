"""Render check results with rich: summary first, worst findings first, each naming file, module, tensor, rule."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .check import CheckResult

STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
# C0/C1 control characters (ESC starts terminal escape sequences) and bidi overrides: names in a stranger's
# checkpoint must not be able to recolour, move the cursor or reorder the report on the user's terminal
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {c: f"\\u{c:04x}" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def _printable(text: str) -> str:
    return text.translate(_UNPRINTABLE)


def _safe(text: str) -> str:
    """Untrusted text for rich markup: control characters shown as escapes, markup brackets escaped."""
    return escape(_printable(text))


def _summary(result: CheckResult) -> Table:
    lay = result.layout
    status = Text("OK", style="bold green") if result.errors == 0 else Text(f"{result.errors} error(s)", style="bold red")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("checkpoint", _safe(result.path))
    grid.add_row("status", Text.assemble(status, f"  {result.warnings} warning(s)"))
    files = f" ({', '.join(lay['config_files'])})" if lay.get("config_files") else ""
    grid.add_row("layout", f"{lay.get('detected') or '-'} from tensors, {lay.get('config') or '-'} from config{_safe(files)}")
    grid.add_row("quantization", f"bits={lay.get('bits')}  group_size={lay.get('group_size')}  sym={lay.get('sym')}  desc_act={lay.get('desc_act')}")
    grid.add_row("contents", f"{result.modules} quantized modules, {lay.get('unquantized_tensors')} other tensors, "
                             f"{result.tensors} tensors in {lay.get('files')} file(s)" + (f" via {_safe(lay['index'])}" if lay.get("index") else ""))
    return grid


def render_check(result: CheckResult, console: Console, per_rule: int = 5) -> None:
    console.print(Panel(_summary(result), title="awqfmt check", expand=False))
    if not result.findings:
        console.print("[green]No findings: every rule passed.[/green]")
        return
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.code] = counts.get(f.code, 0) + 1
    rules = Table(title="Rules hit", show_edge=False)
    for col in ("severity", "rule", "findings"):
        rules.add_column(col)
    seen: set[str] = set()
    for f in result.findings:  # already worst first
        if f.code not in seen:
            seen.add(f.code)
            rules.add_row(Text(f.severity.value, style=STYLE[f.severity.value]), f.code, str(counts[f.code]))
    console.print(rules)
    shown: dict[str, int] = {}
    for f in result.findings:
        shown[f.code] = shown.get(f.code, 0) + 1
        if shown[f.code] > per_rule:
            continue
        tensor = f.tensor[len(f.module) + 1:] if f.tensor and f.module and f.tensor.startswith(f.module + ".") else f.tensor
        where = " > ".join(_safe(x) for x in (f.file, f.module, tensor) if x)
        console.print(Text.assemble((f"{f.severity.value:<7}", STYLE[f.severity.value]), (f.code, "bold")), markup=False)
        if where:
            console.print(f"        [dim]at[/dim] {where}")
        console.print(Text("        " + _printable(f.message)))
        if f.hint:
            console.print(Text("        hint: " + _printable(f.hint), style="dim"))
        if shown[f.code] == per_rule and counts[f.code] > per_rule:
            console.print(f"        [dim]... {counts[f.code] - per_rule} more {f.code} finding(s); --json lists all[/dim]")
